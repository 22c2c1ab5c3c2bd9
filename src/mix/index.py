"""Repository index: the signed list of packages a repository serves.

`index.json` = {"format": 1, "created": unix, "valid_until": unix, "packages": [entry...]}
where an entry is a package's metadata without its file list plus `size`, `sha256` and
`filename` of the package file. `index.json.sig` is a detached ed25519 signature over the
exact bytes of index.json: {"format": 1, "algorithm": "ed25519", "key_id": ..,
"signature": base64}. A client accepts an index only if the signature verifies with a
trusted key, it has not expired, and it is not older than the index it already holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from mix.errors import PackageError, TrustError
from mix.keys import PublicKey, sign
from mix.package import Metadata, read_metadata, sha256_file

FORMAT = 1
INDEX_NAME = "index.json"
SIG_NAME = "index.json.sig"
FILES_NAME = "files.json.gz"
ENTRY_FIELDS = ("name", "version", "arch", "description", "dependencies", "provides",
                "conflicts", "replaces", "license", "url", "size", "installed_size",
                "sha256", "filename", "build_date")
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._~:%-]*\.mixpkg$")
CLOCK_SKEW = 24 * 3600  # accept an index "created" up to a day in our future


def entry_from_metadata(md: Metadata, filename: str, size: int, sha256: str) -> dict[str, Any]:
    raw = md.raw
    entry = {k: raw[k] for k in ENTRY_FIELDS if k in raw}
    entry.update(size=size, sha256=sha256, filename=filename)
    return entry


def scan_repo(repo_dir: Path, files: dict[str, list[str]] | None = None
              ) -> list[dict[str, Any]]:
    """Index entries for every *.mixpkg in repo_dir (metadata read, file hashed); with
    files, also each package file's list of paths (files and symlinks) into it."""
    entries = []
    for p in sorted(Path(repo_dir).glob("*.mixpkg")):
        if not FILENAME_RE.match(p.name):
            raise PackageError(f"{p}: file name is not usable in an index",
                               "name packages NAME-VERSION.ARCH.mixpkg with no spaces")
        md = read_metadata(p)
        entries.append(entry_from_metadata(md, p.name, p.stat().st_size, sha256_file(p)))
        if files is not None:
            files[p.name] = sorted(f.path for f in md.files if f.type != "dir")
    return entries


def _sort_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return (entry["name"], entry["version"], entry.get("arch", ""))


def atomic_write(path: Path, data: bytes) -> None:
    """Replace PATH with DATA: a temporary file beside it, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # (a full disk, for one: leave no half file)
        raise


def atomic_write_all(files: list[tuple[Path, bytes]]) -> None:
    """Replace several files, all or none (as far as space goes): every temporary is
    written and synced first, then they are renamed in order (renames need no space)."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            temps.append((tmp, path))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in temps:
            tmp.unlink(missing_ok=True)
        raise


def normalize_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ENTRIES as a signed index lists them: every field present, in index order."""
    norm = []
    for e in entries:
        out = {"description": "", "dependencies": [], "provides": [], "conflicts": [],
               "replaces": [], "license": "", "url": "", "installed_size": 0}
        out.update({k: v for k, v in e.items() if k in ENTRY_FIELDS})
        norm.append(out)
    norm.sort(key=_sort_key)
    return norm


def next_created(repo_dir: Path, entries: list[dict[str, Any]], floor: int) -> int:
    """The creation date for a new index of ENTRIES in REPO_DIR: FLOOR (the clock, or a
    build's SOURCE_DATE_EPOCH), but never below the index already there, which clients
    may have seen (rollback protection refuses an older one). When that index is newer,
    its date is kept if it lists the same packages and advanced by one second if not."""
    try:
        old = json.loads((Path(repo_dir) / INDEX_NAME).read_bytes())
        old_created, old_packages = int(old["created"]), old["packages"]
    except (OSError, ValueError, KeyError, TypeError):
        return floor
    if old_created < floor:
        return floor
    return old_created if old_packages == normalize_entries(entries) else old_created + 1


def write_index(repo_dir: Path, entries: list[dict[str, Any]], key_path: Path,
                valid_days: int = 30, created: int | None = None,
                files: dict[str, list[str]] | None = None) -> Path:
    """Write repo_dir/index.json for entries and sign it with key_path; return its path.

    Entries need at least name, version, arch, sha256, filename, size; the other
    fields default to empty. Use this to sign an index whose entries you made yourself
    (e.g. a metadata-only index for solver benchmarks).
    """
    created = int(time.time()) if created is None else int(created)
    doc: dict[str, Any] = {"format": FORMAT, "created": created,
                           "valid_until": created + valid_days * 86400,
                           "packages": normalize_entries(entries)}
    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    if files is not None:
        # The file lists (for `mix provides PATH`) in a file of their own, fetched only
        # when asked; the index signs its sha256.
        import gzip

        listed = (json.dumps({"format": FORMAT, "files": files}, sort_keys=True,
                             separators=(",", ":")) + "\n").encode()
        packed = gzip.compress(listed, mtime=0)
        atomic_write(repo_dir / FILES_NAME, packed)
        doc["files"] = {"name": FILES_NAME, "sha256": hashlib.sha256(packed).hexdigest(),
                        "size": len(packed)}
    data = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    kid, signature = sign(Path(key_path), data)
    sig = {"format": FORMAT, "algorithm": "ed25519", "key_id": kid,
           "signature": base64.b64encode(signature).decode()}
    # Signature first: a reader that sees the new index.json alongside an old .sig fails
    # closed (bad signature) rather than trusting unsigned bytes.
    atomic_write(repo_dir / SIG_NAME, (json.dumps(sig, sort_keys=True) + "\n").encode())
    atomic_write(repo_dir / INDEX_NAME, data)
    return repo_dir / INDEX_NAME


def _check_entry(e: Any, source: str) -> None:
    if not isinstance(e, dict):
        raise TrustError(f"index from {source}: a package entry is not an object")
    for key, typ in (("name", str), ("version", str), ("arch", str), ("sha256", str),
                     ("filename", str), ("size", int)):
        if not isinstance(e.get(key), typ):
            raise TrustError(f"index from {source}: entry {e.get('name')!r} lacks a valid {key!r}")
    if not FILENAME_RE.match(e["filename"]):
        raise TrustError(f"index from {source}: entry {e['name']} has unsafe filename "
                         f"{e['filename']!r}")
    for key in ("dependencies", "provides", "conflicts", "replaces"):
        if not isinstance(e.setdefault(key, []), list):
            raise TrustError(f"index from {source}: entry {e['name']}: {key} is not a list")


def verify_index(data: bytes, sig_data: bytes, keyring: dict[str, PublicKey], source: str,
                 held_created: int | None = None, now: float | None = None,
                 keys_dir: Path | None = None) -> dict[str, Any]:
    """Check signature, expiry and rollback; return the parsed index or raise TrustError.
    keys_dir: where the trusted keys are (named in the hint for an unknown key)."""
    now = time.time() if now is None else now
    try:
        sig = json.loads(sig_data)
        kid, algorithm = sig["key_id"], sig["algorithm"]
        signature = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise TrustError(f"index signature from {source} is missing or malformed",
                         "the repository must serve index.json.sig made by `mix repo index`") from None
    if algorithm != "ed25519":
        raise TrustError(f"index signature from {source} uses unsupported algorithm {algorithm!r}")
    key = keyring.get(kid)
    if key is None:
        raise TrustError(f"index from {source} is signed by unknown key {kid}",
                         f"install the repository's public key (NAME.pub) in "
                         f"{keys_dir or '/etc/mix/keys'}/ if you trust it (or pass "
                         "--keys-dir DIR)")
    if not key.verify(data, signature):
        raise TrustError(f"index from {source} has a bad signature (key {kid}, {key.source})",
                         "the index was altered or is incomplete; keep the old one and try a "
                         "mirror you trust")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise TrustError(f"signed index from {source} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TrustError(f"index from {source} has unsupported format {doc.get('format')!r}"
                         if isinstance(doc, dict) else f"index from {source} is not an object")
    created, valid_until = doc.get("created"), doc.get("valid_until")
    if not isinstance(created, int) or not isinstance(valid_until, int) \
            or not isinstance(doc.get("packages"), list):
        raise TrustError(f"index from {source} lacks created/valid_until/packages")
    if valid_until < now:
        raise TrustError(f"index from {source} expired on {utc_date(valid_until)}",
                         "the repository must be re-signed (`mix repo index`); an expired "
                         "index could be a replay of stale data")
    if created > now + CLOCK_SKEW:
        raise TrustError(f"index from {source} claims to be created on {utc_date(created)}, "
                         "in the future", "check this machine's clock")
    if held_created is not None and created < held_created:
        raise TrustError(f"index from {source} (created {utc_date(created)}) is older than the one "
                         f"already held (created {utc_date(held_created)}): refusing a rollback",
                         "a mirror may be serving stale data; try again later or another mirror")
    for entry in doc["packages"]:
        _check_entry(entry, source)
    return doc


def utc_date(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
