"""The .mixpkg format: metadata schema, strict validation, and reading package files.

A .mixpkg is a tar compressed with gzip or (format 2) zstd: `metadata.json` first, then
`scripts/<name>` (optional), then `files/<path>` for every entry the metadata lists (spec:
docs/package-format.md). Reading is strict: every tar member must be named, typed and
moded exactly as metadata.json says, so a package can only ever write what its (signed)
metadata declares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from mix.decompress import (
    ZSTD,
    DecompressError,
    DecompressReader,
    compression_of,
    zstd_module,
)
from mix.errors import PackageError

FORMAT = 1
ARCHES = ("x86_64", "noarch")
SCRIPT_NAMES = ("pre-install", "post-install", "pre-remove", "post-remove", "post-upgrade")
FILE_TYPES = ("file", "dir", "symlink")
SPECIAL_BITS = 0o7000  # setuid, setgid, sticky
SUID_BITS = 0o6000

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+._-]{0,127}$")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# Fields that `mix build` computes; a staging metadata.json may omit them.
COMPUTED = ("files", "checksum", "installed_size", "build_date")
REQUIRED = ("name", "version", "description", "arch")
LIST_FIELDS = ("dependencies", "provides", "conflicts", "replaces", "setuid", "config_files")
STR_FIELDS = ("name", "version", "description", "arch", "license", "url")
KNOWN_FIELDS = frozenset(("format", *STR_FIELDS, *LIST_FIELDS, *COMPUTED, "scripts"))


@dataclass(frozen=True)
class Spec:
    """One dependency-style term: `name`, `name>=1.0`; op and version empty if unversioned."""

    name: str
    op: str = ""
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.version}"


def valid_version(version: str) -> bool:
    """One parser for versions in all of mix: mix.version (libsolv's RPM ordering)."""
    from mix.version import InvalidVersion, parse_version

    try:
        parse_version(version)
    except InvalidVersion:
        return False
    return True


def _dependency(text: Any, where: str) -> Any:
    from mix.version import InvalidDependency, parse_dependency

    if not isinstance(text, str):
        raise PackageError(f"{where}: {text!r} is not a string")
    try:
        return parse_dependency(text)
    except InvalidDependency as e:
        raise PackageError(f"{where}: {e}") from None


def parse_spec(text: str, where: str = "spec") -> Spec:
    """A single term (no alternatives): provides, conflicts, replaces, install requests."""
    dep = _dependency(text, where)
    if dep.alternatives:
        raise PackageError(f"{where}: {text!r} may not list alternatives with '|'")
    return Spec(dep.name, dep.op or "", dep.version or "")


def parse_dependency(text: str, where: str = "dependency") -> list[Spec]:
    """A dependency is one spec or alternatives separated by '|'."""
    return [Spec(d.name, d.op or "", d.version or "") for d in _dependency(text, where).choices()]


def check_path(path: Any, where: str) -> str:
    """A package path: absolute, normalized, no '.', '..', empty or control-character parts."""
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise PackageError(f"{where}: path {path!r} must be absolute and not '/'")
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise PackageError(f"{where}: path {path!r} has an empty, '.' or '..' component",
                               "package paths must be normalized and stay inside the root")
        if _CONTROL.search(part):
            raise PackageError(f"{where}: path {path!r} contains a control character")
    if len(path.encode()) > 4000:
        raise PackageError(f"{where}: path {path[:60]!r}... is too long")
    return path


@dataclass(frozen=True)
class FileEntry:
    """One installed path. mode holds permission bits only (including setuid/setgid)."""

    path: str
    type: str
    mode: int
    sha256: str = ""
    size: int = 0
    target: str = ""
    config: bool = False

    @classmethod
    def parse(cls, raw: Any, where: str) -> FileEntry:
        if not isinstance(raw, dict):
            raise PackageError(f"{where}: file entry must be an object, got {raw!r}")
        unknown = set(raw) - {"path", "type", "mode", "sha256", "size", "target", "config"}
        if unknown:
            raise PackageError(f"{where}: unknown file entry keys {sorted(unknown)}")
        path = check_path(raw.get("path"), where)
        ftype = raw.get("type")
        if ftype not in FILE_TYPES:
            raise PackageError(f"{where}: {path}: type {ftype!r} is not one of {FILE_TYPES}",
                               "device nodes, fifos and sockets cannot be packaged")
        mode = raw.get("mode")
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise PackageError(f"{where}: {path}: mode {mode!r} must be an integer 0..0o7777")
        config = raw.get("config", False)
        if not isinstance(config, bool):
            raise PackageError(f"{where}: {path}: config must be true or false")
        sha, size, target = raw.get("sha256", ""), raw.get("size", 0), raw.get("target", "")
        if ftype == "file":
            if not isinstance(sha, str) or not SHA256_RE.match(sha):
                raise PackageError(f"{where}: {path}: sha256 {sha!r} is not 64 lowercase hex")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise PackageError(f"{where}: {path}: size {size!r} must be a non-negative integer")
        elif sha or size:
            raise PackageError(f"{where}: {path}: only regular files carry sha256 and size")
        if ftype == "symlink":
            if not isinstance(target, str) or not target or "\0" in target:
                raise PackageError(f"{where}: {path}: symlink needs a non-empty target")
        elif target:
            raise PackageError(f"{where}: {path}: only symlinks carry a target")
        if config and ftype != "file":
            raise PackageError(f"{where}: {path}: only regular files can be configuration")
        if ftype == "symlink" and mode != 0o777:
            mode = 0o777  # symlink permissions mean nothing on Linux
        return cls(path, ftype, mode, sha, size, target, config)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "type": self.type, "mode": self.mode}
        if self.type == "file":
            out["sha256"] = self.sha256
            out["size"] = self.size
            if self.config:
                out["config"] = True
        elif self.type == "symlink":
            out["target"] = self.target
        return out


def files_checksum(files: list[FileEntry]) -> str:
    """sha256 of the canonical JSON of the file list: one digest for the whole payload."""
    blob = json.dumps([f.json() for f in files], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Metadata:
    """A package's metadata.json, validated. `raw` is the normalized dict (index/db form)."""

    name: str
    version: str
    arch: str
    files: tuple[FileEntry, ...]
    scripts: tuple[str, ...]
    raw: dict[str, Any] = field(compare=False, repr=False)
    source: bytes = field(default=b"", compare=False, repr=False)  # metadata.json as read

    @property
    def nv(self) -> str:
        return f"{self.name}-{self.version}"

    def json(self) -> dict[str, Any]:
        return self.raw

    @classmethod
    def parse(cls, raw: Any, where: str = "metadata.json", staging: bool = False) -> Metadata:
        """Validate strictly. staging=True accepts a metadata.json without computed fields."""
        if not isinstance(raw, dict):
            raise PackageError(f"{where}: must be a JSON object")
        unknown = set(raw) - KNOWN_FIELDS
        if unknown:
            raise PackageError(f"{where}: unknown fields {sorted(unknown)}",
                               f"allowed fields: {', '.join(sorted(KNOWN_FIELDS))}")
        fmt = raw.get("format", FORMAT)
        if fmt != FORMAT:
            raise PackageError(f"{where}: format {fmt!r} is not supported (this mix reads {FORMAT})")
        required = REQUIRED if staging else REQUIRED + COMPUTED
        missing = [k for k in required if k not in raw]
        if missing:
            raise PackageError(f"{where}: missing required fields: {', '.join(missing)}")
        for key in STR_FIELDS:
            if key in raw and not isinstance(raw[key], str):
                raise PackageError(f"{where}: {key} must be a string, got {raw[key]!r}")
        name, version, arch = raw["name"], raw["version"], raw["arch"]
        if not NAME_RE.match(name):
            raise PackageError(f"{where}: name {name!r} is not valid",
                               "names are lowercase letters, digits and + . _ -, starting "
                               "with a letter or digit")
        if not valid_version(version):
            raise PackageError(f"{where}: version {version!r} does not parse",
                               "versions look like [EPOCH:]VERSION[-RELEASE], e.g. 1.2.3-r1")
        if arch not in ARCHES:
            raise PackageError(f"{where}: arch {arch!r} is not one of {', '.join(ARCHES)}")
        out: dict[str, Any] = {"format": FORMAT, "name": name, "version": version,
                               "description": raw["description"], "arch": arch,
                               "license": raw.get("license", ""), "url": raw.get("url", "")}
        for key in LIST_FIELDS:
            value = raw.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PackageError(f"{where}: {key} must be a list of strings")
            out[key] = list(value)
        for dep in out["dependencies"]:
            parse_dependency(dep, f"{where}: dependencies")
        for key in ("provides", "conflicts", "replaces"):
            for spec in out[key]:
                s = parse_spec(spec, f"{where}: {key}")
                if key == "provides" and s.op not in ("", "="):
                    raise PackageError(f"{where}: provides {spec!r} may only use '='")
        for path in out["setuid"] + out["config_files"]:
            check_path(path, where)
        scripts = raw.get("scripts", [])
        if not isinstance(scripts, list) or any(s not in SCRIPT_NAMES for s in scripts) \
                or len(set(scripts)) != len(scripts):
            raise PackageError(f"{where}: scripts {scripts!r} must be distinct names from "
                               f"{', '.join(SCRIPT_NAMES)}")
        out["scripts"] = sorted(scripts)
        files: list[FileEntry] = []
        if not staging or "files" in raw:
            files = cls._parse_files(raw.get("files"), out, where)
            out["files"] = [f.json() for f in files]
            for key in ("installed_size", "build_date"):
                v = raw.get(key)
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise PackageError(f"{where}: {key} must be a non-negative integer")
                out[key] = v
            checksum = raw.get("checksum")
            if checksum != files_checksum(files):
                raise PackageError(f"{where}: checksum {checksum!r} does not match the file list",
                                   "the package was altered after `mix build`; rebuild it")
            out["checksum"] = checksum
        return cls(name, version, arch, tuple(files), tuple(out["scripts"]), out)

    @staticmethod
    def _parse_files(raw_files: Any, out: dict[str, Any], where: str) -> list[FileEntry]:
        if not isinstance(raw_files, list):
            raise PackageError(f"{where}: files must be a list of file entries")
        files = [FileEntry.parse(f, f"{where}: files[{i}]") for i, f in enumerate(raw_files)]
        seen: dict[str, FileEntry] = {}
        for f in files:
            if f.path in seen:
                raise PackageError(f"{where}: duplicate entry {f.path}")
            seen[f.path] = f
        setuid = set(out["setuid"])
        for f in files:
            # No entry may sit below a symlink of the same package: that writes through it.
            parent = f.path.rsplit("/", 1)[0]
            while parent:
                p = seen.get(parent)
                if p is not None and p.type != "dir":
                    raise PackageError(f"{where}: {f.path} lies below {parent}, which is a "
                                       f"{p.type}, not a directory")
                parent = parent.rsplit("/", 1)[0]
            if f.mode & SUID_BITS and f.path not in setuid:
                raise PackageError(f"{where}: {f.path} is setuid/setgid but not listed in "
                                   "'setuid'", "list deliberate setuid files in metadata 'setuid'")
        for path in setuid:
            entry = seen.get(path)
            if entry is None or entry.type != "file":
                raise PackageError(f"{where}: setuid lists {path}, which is not a file in the package")
        return files


def load_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackageError(f"{where} is not valid JSON: {e}") from None


_GNU_MAGIC = b"ustar  \0"
_PLAIN_TYPES = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE)
_NUMERIC_FIELDS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (329, 337),
                   (337, 345))


def _plain_header(buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo | None:
    """The header mix build writes for nearly every member (GNU magic; a file, directory
    or symlink; a name that fits; octal numbers; the unsigned checksum), parsed as
    tarfile.TarInfo.frombuf would, or None for anything else, which tarfile then parses
    (long names, pax, other types, base-256 numbers, a bad checksum). tarfile takes
    about 40 us a header, a tenth of the 50-package install; this takes a few."""
    if len(buf) != tarfile.BLOCKSIZE or buf[257:265] != _GNU_MAGIC \
            or buf[156:157] not in _PLAIN_TYPES or buf[345]:  # [345]: a ustar name prefix
        return None
    try:
        mode, uid, gid, size, mtime, devmajor, devminor = (
            int(buf[a:b].split(b"\0", 1)[0].strip() or b"0", 8) for a, b in _NUMERIC_FIELDS)
        chksum = int(buf[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None
    if chksum != 256 + sum(buf) - sum(buf[148:156]):
        return None
    info = tarfile.TarInfo(buf[0:100].split(b"\0", 1)[0].decode(encoding, errors))
    info.mode, info.uid, info.gid, info.size, info.mtime, info.chksum = \
        mode, uid, gid, size, mtime, chksum
    info.type = buf[156:157]
    info.linkname = buf[157:257].split(b"\0", 1)[0].decode(encoding, errors)
    info.uname = buf[265:297].split(b"\0", 1)[0].decode(encoding, errors)
    info.gname = buf[297:329].split(b"\0", 1)[0].decode(encoding, errors)
    info.devmajor, info.devminor = devmajor, devminor
    if info.type == tarfile.DIRTYPE:
        info.name = info.name.rstrip("/")
    return info


class _TarStream:
    """The members of an uncompressed tar stream, one pass, no seeking.

    Headers are parsed by tarfile itself (TarInfo.fromtarfile, which also handles GNU
    long names and pax headers), except plain ones (_plain_header); file contents are
    read straight from the stream in large pieces, which is what makes extraction fast.
    This object is what fromtarfile() expects of a TarFile: fileobj, encoding, errors,
    offset, pax_headers.
    """

    def __init__(self, src: DecompressReader, where: str, fast: bool = True) -> None:
        """fast: parse plain headers without tarfile (off only to compare the two)."""
        self.src = src
        self.fast = fast
        self.unread = b""  # a header read for the fast path and handed back to tarfile
        self.where = where
        self.fileobj = self
        self.encoding = "utf-8"
        self.errors = "surrogateescape"
        self.offset = 0
        self.pax_headers: dict[str, str] = {}
        self.pos = 0
        self.remaining = 0  # data bytes of the current member not read yet
        self.pending = 0  # data + padding bytes of the current member not read yet

    def _fail(self, e: BaseException) -> PackageError:
        return PackageError(f"{self.where}: corrupt package archive: {e}",
                            "the file is truncated or damaged; download or build it again")

    def read(self, n: int) -> bytes:
        """Exactly n bytes (fewer only at the end of the stream); used by fromtarfile."""
        parts, got = [], 0
        if self.unread:
            parts.append(self.unread[:n])
            got, self.unread = len(parts[0]), self.unread[n:]
        while got < n:
            piece = self.src.read(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        self.pos += got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def tell(self) -> int:
        return self.pos

    def _skip(self, n: int) -> None:
        while n > 0:
            piece = self.src.read_view(min(n, 1 << 20))
            if not piece:
                raise self._fail(EOFError("unexpected end of data"))
            n -= len(piece)
            self.pos += len(piece)

    def next(self) -> tarfile.TarInfo | None:
        try:
            self._skip(self.pending)
            self.pending = self.remaining = 0
            info = self._next_plain() if self.fast and not self.pax_headers else None
            if info is None:
                info = tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):  # type: ignore[attr-defined]
            return None
        except (tarfile.TarError, EOFError, DecompressError, OSError, ValueError) as e:
            raise self._fail(e) from None
        if info.issparse():
            raise PackageError(f"{self.where}: {info.name} is a sparse file, which "
                               ".mixpkg does not allow")
        self.pending = self.offset - self.pos  # what _proc_builtin says follows the header
        self.remaining = info.size if info.isreg() else 0
        return info

    def _next_plain(self) -> tarfile.TarInfo | None:
        """The next header if it is plain, else None with the block handed back."""
        buf = self.read(tarfile.BLOCKSIZE)
        info = _plain_header(buf, self.encoding, self.errors)
        if info is None:
            self.unread, self.pos = buf, self.pos - len(buf)
            return None
        info.offset = self.pos - tarfile.BLOCKSIZE
        info.offset_data = self.pos
        # what tarfile's _proc_builtin skips: the data of a file, rounded up to blocks
        self.offset = self.pos + (-(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                                  if info.type == tarfile.REGTYPE else 0)
        return info

    def read_data(self, n: int = -1) -> bytes:
        """Up to n bytes of the current member's data (all of it if n < 0; b"" at its end)."""
        if n < 0:
            return self._data(self.remaining, whole=True)
        return bytes(self._data(n))

    def read_view(self, n: int) -> bytes | memoryview:
        """Up to n bytes of the current member's data without copying: the view is valid
        until the next read."""
        return self._data(n)

    def _data(self, n: int, whole: bool = False) -> Any:
        want = min(n, self.remaining)
        if want <= 0:
            return b""
        try:
            piece = self.read(want) if whole else self.src.read_view(want)
        except (DecompressError, OSError) as e:
            raise self._fail(e) from None
        if not piece:
            raise self._fail(EOFError("unexpected end of data"))
        if not whole:
            self.pos += len(piece)
        self.remaining -= len(piece)
        self.pending -= len(piece)
        return piece


class MemberStream:
    """read() for the content of the member a PackageReader just yielded."""

    def __init__(self, tar: _TarStream) -> None:
        self.tar = tar

    def read(self, n: int = -1) -> bytes:
        return self.tar.read_data(n)

    def read_view(self, n: int) -> bytes | memoryview:
        """Up to n bytes without copying; the view is valid until the next read."""
        return self.tar.read_view(n)


class PackageReader:
    """Streams one .mixpkg: metadata first, then members checked against it.

    Usage: `with PackageReader(path) as r: r.metadata; for entry, src, mtime in
    r.members(): ...` where src is a readable stream for regular files (None for dirs
    and symlinks); scripts come back as `r.scripts` once members() is exhausted.
    """

    def __init__(self, path: Path, hasher: Any = None, known: Metadata | None = None,
                 threaded: bool = False) -> None:
        """hasher (e.g. hashlib.sha256()) sees every byte of the file; call finish() after
        members() to hash the rest. known: metadata parsed earlier from the same bytes
        (reused when metadata.json is byte-identical). threaded: inflate on a second thread
        (for extracting whole packages)."""
        self.path = Path(path)
        self.where = str(path)
        self.hasher = hasher
        self.known = known
        self.threaded = threaded
        self._stream: DecompressReader | None = None
        self._fh: IO[bytes] | None = None
        self._tar: _TarStream | None = None
        self.scripts: dict[str, bytes] = {}
        self.metadata = self._open()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._fh is not None:
            self._fh.close()

    def _open(self) -> Metadata:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as e:
            raise PackageError(f"cannot open package {self.path}: {e.strerror}") from None
        compression = compression_of(self._fh.read(4))
        if compression is None:
            self.close()
            raise PackageError(f"{self.where}: not a gzip or zstd file, so not a .mixpkg")
        if compression == ZSTD and zstd_module() is None:
            self.close()
            raise PackageError(f"{self.where}: compressed with zstd (package format 2), which "
                               "this mix cannot read: the Python module zstandard is missing",
                               "install python3-zstandard (on MixOS: mix install "
                               "python3-zstandard), or use a gzip build of the package")
        self._fh.seek(0)
        self._stream = DecompressReader(self._fh, compression, self.hasher,
                                        threaded=self.threaded)
        self._tar = _TarStream(self._stream, self.where)
        try:
            first = self._tar.next()
            if first is None or first.name != "metadata.json" or not first.isfile():
                raise PackageError(f"{self.where}: first member must be metadata.json")
            if first.size > 64 * 1024 * 1024:
                raise PackageError(f"{self.where}: metadata.json is implausibly large")
            data = self._tar.read_data()
        except PackageError:
            self.close()
            raise
        self.metadata_bytes = data
        if self.known is not None and data == self.known.source:
            return self.known
        md = Metadata.parse(load_json(data, f"{self.where}: metadata.json"),
                            f"{self.where}: metadata.json")
        return dataclasses.replace(md, source=data)

    def finish(self) -> None:
        """Read to the end: the hasher sees the whole file and the end of the stream is checked."""
        if self._stream is not None:
            try:
                self._stream.drain()
            except (DecompressError, OSError) as e:
                raise PackageError(f"{self.where}: corrupt package archive: {e}") from None

    def members(self) -> Iterator[tuple[FileEntry, MemberStream | None, int]]:
        """Yield (entry, stream, mtime) in archive order; raise on anything undeclared."""
        tar = self._tar
        assert tar is not None
        md = self.metadata
        expected = {f.path: f for f in md.files}
        seen: set[str] = set()
        stream = MemberStream(tar)
        while True:
            member = tar.next()
            if member is None:
                break
            name = member.name
            if name.startswith("scripts/"):
                script = name[len("scripts/"):]
                if script not in md.scripts or script in self.scripts or not member.isfile():
                    raise PackageError(f"{self.where}: unexpected member {name!r}")
                self.scripts[script] = tar.read_data()
                continue
            if not name.startswith("files/"):
                raise PackageError(f"{self.where}: member {name!r} is outside files/ and scripts/")
            path = "/" + name[len("files/"):].rstrip("/")
            entry = expected.get(path)
            if entry is None:
                raise PackageError(f"{self.where}: member {name!r} is not listed in metadata.json",
                                   "only declared files may be installed; rebuild the package")
            if path in seen:
                raise PackageError(f"{self.where}: duplicate member {name!r}")
            seen.add(path)
            kind = "file" if member.isreg() else "dir" if member.isdir() else \
                "symlink" if member.issym() else "special"
            if kind != entry.type:
                raise PackageError(f"{self.where}: {path} is a {kind} in the archive but a "
                                   f"{entry.type} in metadata.json")
            if kind != "symlink" and (member.mode & 0o7777) != entry.mode:
                raise PackageError(f"{self.where}: {path} has mode {member.mode & 0o7777:o} in "
                                   f"the archive but {entry.mode:o} in metadata.json")
            if kind == "symlink":
                if member.linkname != entry.target:
                    raise PackageError(f"{self.where}: symlink {path} target differs from metadata")
                yield entry, None, int(member.mtime)
            elif kind == "file":
                if member.size != entry.size:
                    raise PackageError(f"{self.where}: {path} size differs from metadata")
                yield entry, stream, int(member.mtime)
            else:
                yield entry, None, int(member.mtime)
        missing = set(expected) - seen
        if missing:
            raise PackageError(f"{self.where}: archive lacks {len(missing)} listed entries, "
                               f"e.g. {min(missing)}", "the package is truncated")
        if set(md.scripts) - set(self.scripts):
            lacking = sorted(set(md.scripts) - set(self.scripts))
            raise PackageError(f"{self.where}: archive lacks scripts {lacking}")


def read_metadata(path: Path) -> Metadata:
    """Only the metadata of a package file (cheap: metadata.json is the first member)."""
    with PackageReader(path) as reader:
        return reader.metadata


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
