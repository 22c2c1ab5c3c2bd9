"""Applying a plan to a root so that it is never half-done.

Phases (the journal row in the database records which one was reached):

1. prepare   verify every package file's sha256 against the signed index, read its
             metadata, decide every path's fate (new file, .mixnew, delete, conflict).
             Nothing is written; conflicts and bad paths stop here.
2. staging   journal row "staging" (lists every temporary name and created directory),
             pre-install/pre-remove scripts, extract every file to a temporary name
             beside its target (.mixtmp-TXID-N), sync the filesystem.
3. commit    ONE SQLite transaction: installed/removed packages, their files, and the
             journal row switched to "committed". This is the point of no return.
4. apply     rename temporaries into place, delete files of removed/old packages, remove
             emptied directories, sync, delete the journal row; then post-* scripts.

If mix dies anywhere, the next mix run (recover()) rolls a "staging" journal back
(deletes the temporaries and created directories) or finishes a "committed" one (the
renames and deletions are idempotent), so the files on disk match the database.
mix.failpoint names the checkpoints between the phases, where the crash tests kill mix.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mix import apparmor, services
from mix.database import Database
from mix.errors import (
    DiskFullError,
    MixError,
    PackageError,
    TransactionError,
    TrustError,
    is_disk_full,
)
from mix.failpoint import checkpoint
from mix.package import FileEntry, Metadata, PackageReader, parse_spec, sha256_file
from mix.progress import Progress
from mix.rootpath import RootResolver
from mix.scripts import run_script
from mix.session import human_size

# The kinds of change that put a package in the place of its installed version.
REPLACING = ("upgrade", "downgrade", "reinstall")


@dataclass
class Change:
    kind: str                          # "install" | "remove" | one of REPLACING
    name: str
    new: dict[str, Any] | None = None  # index entry of the new package
    old: dict[str, Any] | None = None  # installed entry (upgrade, remove)
    path: Path | None = None           # the new package's file
    reason: str = "dependency"
    repo: str = ""


@dataclass
class Outcome:
    installed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    downgraded: list[str] = field(default_factory=list)
    reinstalled: list[str] = field(default_factory=list)
    mixnew: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # what package scripts printed: (package, script, text), in the order they ran
    script_output: list[tuple[str, str, str]] = field(default_factory=list)


class PostScriptError(TransactionError):
    """post-* scripts failed after the commit. failed_installs: newly installed packages
    whose post-install failed (the caller removes them again); outcome: what was done."""

    def __init__(self, message: str, hint: str, failed_installs: list[str],
                 outcome: Outcome) -> None:
        super().__init__(message, hint)
        self.failed_installs = failed_installs
        self.outcome = outcome


def _hash_mismatch(c: Change, got: str) -> TrustError:
    assert c.new is not None
    return TrustError(f"{c.path}: sha256 {got} does not match the signed index "
                      f"({c.new['sha256']}) for {c.name} {c.new['version']}",
                      "run 'mix update'; if it persists the mirror is corrupt")


def _check_signed_hash(c: Change) -> None:
    """A package that fails to read is first of all one that is not what the index signed:
    say so (TrustError) rather than report it as merely malformed."""
    assert c.new is not None and c.path is not None
    want = c.new.get("sha256")
    if want:
        got = sha256_file(c.path)
        if got != want:
            raise _hash_mismatch(c, got) from None


@functools.cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


# Files from this size on have their writeback started as soon as they are written
# (sync_file_range, SYNC_FILE_RANGE_WRITE: it only starts it): the disk works while
# extraction goes on, so the sync before the commit waits less, and mix does not pile up
# dirty pages until the kernel throttles it. On the 50-package benchmark this took the
# median install from 2.00 to 1.36 s. Small files are left to the kernel's own
# writeback, which batches them better.
WRITEBACK_MIN = 64 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing fd's dirty pages; an optimisation only (the
    durability comes from sync_root), so a failure is ignored."""
    import ctypes

    try:
        _libc().sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0),
                                ctypes.c_uint(_SYNC_FILE_RANGE_WRITE))
    except (OSError, AttributeError):
        pass


def sync_root(root: Path) -> None:
    """Flush the root's filesystem (syncfs: one flush instead of an fsync per file)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc().syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)


def _now() -> int:
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    return int(sde) if sde and sde.isdigit() else int(time.time())


def check_space(needs: dict[str, tuple[int, int]], what: str) -> None:
    """Refuse (DiskFullError) when a filesystem lacks the bytes or inodes needed; needs
    maps a directory (or the path it will have) to (bytes, inodes) to be written under it. Bytes are
    counted in whole blocks, plus 1 % and a block per inode for the filesystem's own
    bookkeeping."""
    by_fs: dict[int, tuple[str, int, int, os.statvfs_result]] = {}
    for d, (size, inodes) in needs.items():
        while d != "/" and not os.path.isdir(d):
            d = os.path.dirname(d)
        try:
            dev = os.stat(d).st_dev
            st = os.statvfs(d)
        except OSError:
            continue  # cannot tell: the write itself will say
        block = st.f_frsize or 4096
        blocks = -(-size // block) + inodes
        first, b, n, _ = by_fs.get(dev, (d, 0, 0, st))
        by_fs[dev] = (first, b + blocks, n + inodes, st)
    for d, blocks, inodes, st in by_fs.values():
        block = st.f_frsize or 4096
        need = (blocks + blocks // 100) * block
        free = st.f_bavail * block
        if need > free:
            raise DiskFullError(f"disk full: {what} needs {human_size(need)} on the filesystem of "
                                f"{d}, which has {human_size(free)} free; nothing was changed",
                                f"free at least {human_size(need - free)} there, then run mix again")
        if st.f_files and inodes > st.f_favail:  # f_files 0: no fixed number of inodes
            raise DiskFullError(f"disk full: {what} needs {inodes} inodes on the filesystem "
                                f"of {d}, which has {st.f_favail} free; nothing was changed",
                                "delete some files there, then run mix again")


def _kind_on_disk(path: str) -> str:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "file" if stat.S_ISREG(st.st_mode) else "special"


class Transaction:
    def __init__(self, root: Path, db: Database, changes: list[Change], run_scripts: bool = True,
                 progress: bool | None = None, command: str = "") -> None:
        """command: what was asked for, recorded in the history with the changes."""
        self.root = Path(root).absolute()
        self.command = command
        self.db = db
        self.changes = changes
        self.run_scripts = run_scripts
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.txid = uuid.uuid4().hex[:12]
        self.meta: dict[str, Metadata] = {}
        self.out = Outcome()

    # --- phase 1 -----------------------------------------------------------------------
    def _read_metadata(self) -> None:
        """Plan from each package's metadata.json. The package is not verified yet: staging
        hashes every byte it reads and nothing of a package that fails is committed."""
        for c in self.changes:
            if c.kind == "remove":
                continue
            assert c.new is not None and c.path is not None
            try:
                with PackageReader(c.path) as reader:
                    md = reader.metadata
            except PackageError:
                _check_signed_hash(c)
                raise
            if (md.name, md.version, md.arch) != (c.new["name"], c.new["version"],
                                                  c.new.get("arch", md.arch)):
                raise PackageError(f"{c.path} holds {md.name} {md.version} ({md.arch}), but the "
                                   f"index promised {c.new['name']} {c.new['version']}")
            self.meta[c.name] = md

    def prepare(self) -> dict[str, Any]:
        self._read_metadata()
        leaving = {c.name for c in self.changes if c.kind == "remove" or c.kind in REPLACING}
        by_path: dict[str, list[dict[str, Any]]] = {}
        for row in self.db.all_files():
            by_path.setdefault(row["path"], []).append(row)
        new_owner: dict[str, tuple[str, FileEntry]] = {}
        planned: dict[str, tuple[str, str]] = {}
        for name, md in self.meta.items():
            for f in md.files:
                prev = new_owner.get(f.path)
                if prev is not None:
                    types = {prev[1].type, f.type}
                    if types == {"dir", "symlink"}:
                        # A directory entry is satisfied by another package's symlink to a
                        # directory (merged /usr: /lib -> usr/lib): the symlink wins.
                        if f.type == "dir":
                            continue
                    elif types != {"dir"}:
                        raise TransactionError(f"file conflict: {f.path} is in both {prev[0]} "
                                               f"and {name}",
                                               "these packages cannot be installed together")
                new_owner[f.path] = (name, f)
                planned[f.path] = (f.type, f.target)
        resolver = RootResolver(self.root, planned)
        renames: list[dict[str, Any]] = []
        created: dict[str, int] = {}
        transfers: list[tuple[str, str]] = []
        n = 0

        existing: set[str] = set()

        def need_dir(target: str, mode: int = 0o755) -> None:
            parent = target.rsplit("/", 1)[0]
            if parent and parent != str(self.root) and parent not in created \
                    and parent not in existing:
                if _kind_on_disk(parent) == "missing":
                    need_dir(parent)
                    created[parent] = 0o755
                else:
                    existing.add(parent)
            if mode and _kind_on_disk(target) == "missing":
                created[target] = mode

        for path in sorted(new_owner):
            name, f = new_owner[path]
            md = self.meta[name]
            why = f"{md.nv}: {path}"
            rows = by_path.get(path, [])
            remaining = [r for r in rows if r["package"] not in leaving]
            target = str(self.root) + resolver.target(path, why)
            disk = _kind_on_disk(target)
            if f.type == "dir":
                if any(r["type"] == "file" for r in remaining):
                    raise TransactionError(f"file conflict: {why} is a directory, but "
                                           f"{remaining[0]['package']} owns it as a {remaining[0]['type']}")
                if disk == "missing":
                    need_dir(target, f.mode)
                elif disk == "symlink":
                    resolved = str(self.root) + resolver.resolve_dir(path, why)
                    if _kind_on_disk(resolved) not in ("dir", "missing"):
                        raise TransactionError(f"{why}: on disk a symlink to a non-directory")
                elif disk != "dir":
                    raise TransactionError(f"{why}: cannot create directory, a {disk} is in the "
                                           "way", "remove it or the package that owns it first")
                continue
            replaces = {parse_spec(s).name for s in md.raw["replaces"]}
            for r in remaining:
                if r["type"] == "dir" or r["package"] not in replaces:
                    raise TransactionError(
                        f"file conflict: {path} of {md.nv} is already owned by {r['package']}",
                        f"remove {r['package']} first, or {name} must declare "
                        f"'replaces: {r['package']}'")
                transfers.append((path, r["package"]))
            owned = bool(rows)
            mixnew = False
            if disk in ("dir", "special"):
                raise TransactionError(f"{why}: a {disk} is in the way on disk",
                                       "remove it first")
            if disk == "symlink" and f.config:
                mixnew = True  # the admin replaced the configuration file by a link: keep it
            elif disk == "file" and f.type == "file" and f.config:
                disk_sha = sha256_file(target)
                recorded = {r["sha256"] for r in rows}
                if disk_sha != f.sha256 and disk_sha not in recorded:
                    mixnew = True
            elif disk != "missing" and not owned:
                same = (f.type == "file" and disk == "file" and sha256_file(target) == f.sha256) \
                    or (f.type == "symlink" and disk == "symlink" and os.readlink(target) == f.target)
                if not same:
                    raise TransactionError(f"{why}: {target} exists on disk and no package owns it",
                                           "move it away, then run mix again")
            need_dir(target, 0)
            n += 1
            temp = f"{target.rsplit('/', 1)[0]}/.mixtmp-{self.txid}-{n}"
            renames.append({"path": path, "pkg": name, "temp": temp,
                            "dest": target + (".mixnew" if mixnew else "")})
            if mixnew:
                self.out.mixnew.append(path)

        dests = {r["dest"] for r in renames}
        disk_resolver = RootResolver(self.root)
        deletes: list[str] = []
        rmdirs: list[str] = []
        for c in self.changes:
            if c.kind == "install":
                continue
            for row in self.db.files(c.name):
                path = row["path"]
                if path in new_owner:
                    continue
                if any(r["package"] not in leaving for r in by_path.get(path, [])):
                    continue
                try:
                    target = str(self.root) + disk_resolver.target(path, f"{c.name}: {path}")
                except TransactionError as e:
                    self.out.warnings.append(f"not deleting {path}: {e}")
                    continue
                if target in dests:
                    continue
                if row["type"] == "dir":
                    rmdirs.append(target)
                elif row["config"] and _kind_on_disk(target) == "file" \
                        and sha256_file(target) != row["sha256"]:
                    self.out.kept.append(path)
                else:
                    deletes.append(target)
        rmdirs.sort(reverse=True)
        return {"txid": self.txid, "renames": renames,
                "created": sorted(created.items()), "deletes": deletes, "rmdirs": rmdirs,
                "transfers": transfers}

    # --- phase 2 -----------------------------------------------------------------------
    def _stage(self, data: dict[str, Any]) -> None:
        old_umask = os.umask(0)  # modes below are exactly the packages' modes
        try:
            self._stage_files(data)
        finally:
            os.umask(old_umask)

    def _stage_files(self, data: dict[str, Any]) -> None:
        self.writers = _Writers()
        try:
            self._stage_on(self.writers, data)
            self.writers.finish()
        finally:
            self.writers.close()

    def _stage_on(self, writers: _Writers, data: dict[str, Any]) -> None:
        by_depth: dict[int, list[tuple[str, int]]] = {}
        for d, mode in data["created"]:
            by_depth.setdefault(d.count("/"), []).append((d, mode))
        for depth in sorted(by_depth):  # parents before children, siblings in parallel
            for d, mode in by_depth[depth]:
                writers.submit(_make_dir, d, mode)
            writers.finish()
        by_pkg: dict[str, dict[str, dict[str, Any]]] = {}
        for r in data["renames"]:
            by_pkg.setdefault(r["pkg"], {})[r["path"]] = r
        installs = [c for c in self.changes if c.kind != "remove"]

        def open_reader(i: int) -> tuple[PackageReader | None, Any, PackageError | None]:
            c = installs[i]
            assert c.path is not None
            hasher = hashlib.sha256()
            try:
                return PackageReader(c.path, hasher, known=self.meta[c.name], threaded=True), \
                    hasher, None
            except PackageError as e:
                return None, hasher, e

        # The next package is opened (and starts inflating on its thread) while the
        # current one is written out.
        nxt = open_reader(0) if installs else None
        self.bar = Progress("extracting", len(installs),
                            sum(r_size for c in installs for r_size in self._sizes(c)),
                            enabled=self.progress)
        try:
            for i, c in enumerate(installs):
                assert nxt is not None
                current, nxt = nxt, (open_reader(i + 1) if i + 1 < len(installs) else None)
                self.bar.next_item(c.name)
                self._extract(c, current, by_pkg.get(c.name, {}))
        finally:
            if nxt is not None and nxt[0] is not None:
                nxt[0].close()
            self.bar.close()

    def _sizes(self, c: Change) -> list[int]:
        return [f.size for f in self.meta[c.name].files if f.type == "file"]

    def _extract(self, c: Change,
                 opened: tuple[PackageReader | None, Any, PackageError | None],
                 wanted: dict[str, dict[str, Any]]) -> None:
        assert c.path is not None and c.new is not None
        reader, hasher, error = opened
        # The package's own sha256 (from the signed index) covers every byte, so per-file
        # hashes are only re-checked for untrusted local files (--allow-untrusted).
        check_files = bool(c.new.get("_untrusted"))
        want = c.new.get("sha256")
        try:
            if error is not None:
                raise error
            assert reader is not None
            with reader:
                for entry, stream, mtime in reader.members():
                    r = wanted.get(entry.path)
                    if r is None:
                        continue
                    self._write_temp(r, entry, stream, mtime, str(c.path), check_files)
                reader.finish()
                self.scripts_of[c.name] = dict(reader.scripts)
            got = hasher.hexdigest()
        except PackageError:
            _check_signed_hash(c)
            raise
        if want and got != want:
            raise _hash_mismatch(c, got)

    def _write_temp(self, r: dict[str, Any], entry: FileEntry, stream: Any, mtime: int,
                    where: str, check: bool) -> None:
        temp = r["temp"]
        if entry.type == "file":
            self.bar.advance(entry.size)
        if entry.type == "symlink":
            self.writers.submit(_make_symlink, temp, entry.target, mtime)
        elif entry.size <= _Writers.SMALL:
            pieces = []
            while piece := stream.read(1 << 20):
                pieces.append(piece)
            self.writers.submit(_write_file, temp, entry, pieces, mtime, where, check,
                                size=entry.size)
        else:
            # written before the next read: views into the decompressed stream, no copies
            _write_file(temp, entry, iter(lambda: stream.read_view(1 << 20), b""), mtime,
                        where, check)

    # --- phases 3, 4 ---------------------------------------------------------------------
    def _commit(self, data: dict[str, Any]) -> None:
        when = _now()
        with self.db.transaction() as c:
            for ch in self.changes:
                if ch.kind == "remove" or ch.kind in REPLACING:
                    Database.drop_package(c, ch.name)
            for path, pkg in data["transfers"]:
                Database.drop_file(c, path, pkg)
            for ch in self.changes:
                if ch.kind == "remove":
                    continue
                md = dict(self.meta[ch.name].raw)
                Database.put_package(c, md, ch.reason, ch.repo, when,
                                     self.scripts_of.get(ch.name, {}))
            if self.command:
                Database.add_history(c, when, self.command, [
                    {"action": ch.kind, "name": ch.name,
                     "version": (ch.new or ch.old or {}).get("version"),
                     "old_version": (ch.old or {}).get("version") if ch.kind in REPLACING
                     else None, "reason": ch.reason} for ch in self.changes])
            Database.set_journal(c, "committed", data)

    def space_needed(self, data: dict[str, Any]) -> dict[str, tuple[int, int]]:
        """Bytes and inodes the staging phase needs, by an existing directory of each
        filesystem it writes to. Every new file is staged while the files it replaces
        still exist, so the peak is the new files themselves, not the size difference."""
        sizes = {path: f.size for md in self.meta.values() for f in md.files
                 if f.type == "file" for path in (f.path,)}
        needs: dict[str, tuple[int, int]] = {}
        anchor_of: dict[str, str] = {}

        def anchor(d: str) -> str:
            found = anchor_of.get(d)
            if found is None:
                found = d
                while found != "/" and _kind_on_disk(found) != "dir":
                    found = os.path.dirname(found)
                anchor_of[d] = found
            return found

        def add(d: str, size: int, inodes: int) -> None:
            a = anchor(d)
            b, n = needs.get(a, (0, 0))
            needs[a] = (b + size, n + inodes)

        for r in data["renames"]:
            add(os.path.dirname(r["temp"]), sizes.get(r["path"], 0), 1)
        for d, _mode in data["created"]:
            add(d, 0, 1)
        # the database: the journal row and the new file rows, a few times over (SQLite's
        # rollback journal holds the old pages while the new ones are written)
        files = sum(len(md.files) for md in self.meta.values())
        add(str(self.db.path.parent), 4 * len(json.dumps(data)) + 512 * files + (64 << 10), 2)
        return needs

    def run(self) -> Outcome:
        data = self.prepare()
        check_space(self.space_needed(data), "the transaction")
        self.scripts_of: dict[str, dict[str, bytes]] = {}
        # post-remove bodies must be read before the commit drops them from the database
        self.old_scripts = {c.name: self.db.scripts(c.name) for c in self.changes
                            if c.kind == "remove"}
        with self.db.transaction() as c:
            Database.set_journal(c, "staging", data)
        try:
            checkpoint("staging")
            self._stage(data)
            # pre-* scripts run once every package is verified and staged, before anything
            # is visible: a failure still changes nothing
            self._pre_scripts()
            self._stop_services()
            sync_root(self.root)
            checkpoint("staged")
            self._commit(data)
        except BaseException as e:
            rollback(self.root, self.db, data)
            if is_disk_full(e) or isinstance(e, DiskFullError):
                detail = e.message if isinstance(e, DiskFullError) else str(e)
                raise DiskFullError(f"disk full, the transaction was rolled back: {detail}",
                                    "nothing was changed; free some space, then run mix "
                                    "again") from None
            if isinstance(e, OSError):
                raise TransactionError(f"transaction failed and was rolled back: {e}",
                                       "nothing was changed; fix the cause and "
                                       "run mix again") from None
            raise
        checkpoint("committed")
        apply(self.root, self.db, data)
        for ch in self.changes:
            {"install": self.out.installed, "upgrade": self.out.upgraded,
             "downgrade": self.out.downgraded, "reinstall": self.out.reinstalled,
             "remove": self.out.removed}[ch.kind].append(ch.name)
        self._new_profiles()
        self._new_services()
        self._post_scripts()
        return self.out

    def _stop_services(self) -> None:
        """A removed package's services stop before its files go (docs/services.md)."""
        for c in self.changes:
            if c.kind == "remove":
                paths = [row["path"] for row in self.db.files(c.name)]
                for name in services.names(paths):
                    self._said(c.name, "service", services.removing(self.root, name))
                self._said(c.name, "apparmor", apparmor.removing(self.root, paths))

    def _new_profiles(self) -> None:
        """Installed or upgraded AppArmor profiles are loaded before any service starts."""
        for c in self.changes:
            if c.kind != "remove":
                self._said(c.name, "apparmor", apparmor.installed(
                    self.root, (f.path for f in self.meta[c.name].files)))

    def _new_services(self) -> None:
        """A first install enables a service only if its package says so."""
        for c in self.changes:
            if c.kind == "install":
                for name in services.names(f.path for f in self.meta[c.name].files):
                    self._said(c.name, "service", services.installed(self.root, name))

    def _pre_scripts(self) -> None:
        if not self.run_scripts:
            return
        for c in self.changes:
            pre = self.scripts_of.get(c.name, {}).get("pre-install")
            if c.kind == "install" and pre:
                self._said(c.name, "pre-install", run_script(
                    self.root, c.name, "pre-install", pre,
                    {"MIX_VERSION": self.meta[c.name].version}, self.out.warnings))
            elif c.kind == "remove":
                body = self.db.scripts(c.name).get("pre-remove")
                if body:
                    self._said(c.name, "pre-remove", run_script(
                        self.root, c.name, "pre-remove", body,
                        {"MIX_VERSION": (c.old or {}).get("version", "")}, self.out.warnings))

    def _said(self, package: str, script: str, text: str) -> None:
        if text:
            self.out.script_output.append((package, script, text))

    def _post_scripts(self) -> None:
        """After the commit. A failed post-install is reported with the package's name so
        that the caller can remove it again; other post-* failures are reported (exit 7)."""
        if not self.run_scripts:
            return
        failures: list[str] = []
        failed_installs: list[str] = []
        for c in self.changes:
            body: bytes | None
            if c.kind == "remove":
                body = self.old_scripts.get(c.name, {}).get("post-remove")
                script, env = "post-remove", {"MIX_VERSION": (c.old or {}).get("version", "")}
            else:
                script = "post-install" if c.kind == "install" else "post-upgrade"
                body = self.scripts_of.get(c.name, {}).get(script)
                env = {"MIX_VERSION": self.meta[c.name].version,
                       "MIX_OLD_VERSION": (c.old or {}).get("version", "")}
            if body:
                try:
                    self._said(c.name, script, run_script(self.root, c.name, script, body,
                                                          env, self.out.warnings))
                except MixError as e:
                    failures.append(str(e))
                    if c.kind == "install":
                        failed_installs.append(c.name)
        if failures:
            raise PostScriptError("scripts failed after the transaction:\n  "
                                  + "\n  ".join(failures),
                                  "fix the cause and install again", failed_installs, self.out)



class _Writers:
    """Creates directories, small files and symlinks on a few worker threads. Creating an
    inode can wait for the filesystem journal (about 1 ms each on a busy host); several
    creations can wait at once, and the GIL is released while they do. Work is handed
    over in batches (up to BATCH entries or BATCH_BYTES): one task per file cost more in
    thread hand-offs than the writing itself."""

    SMALL = 1 << 20  # larger files are written by the reading thread, as they stream
    BATCH = 32
    BATCH_BYTES = 1 << 20
    MAX_PENDING_BYTES = 64 << 20  # bounds the memory held by queued small files
    MAX_PENDING_BATCHES = 256  # and the number of entries queued

    def __init__(self, workers: int = 4) -> None:
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mix-write")
        self.pending: deque[tuple[Future[None], int]] = deque()
        self.pending_bytes = 0
        self.batch: list[tuple[Any, tuple[Any, ...]]] = []
        self.batch_bytes = 0

    def submit(self, fn: Any, *args: Any, size: int = 0) -> None:
        """Queue fn(*args); size: the bytes it holds in memory until it runs."""
        self.batch.append((fn, args))
        self.batch_bytes += size
        if len(self.batch) >= self.BATCH or self.batch_bytes >= self.BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        self.pending.append((self.pool.submit(_run_batch, self.batch), self.batch_bytes))
        self.pending_bytes += self.batch_bytes
        self.batch, self.batch_bytes = [], 0
        while self.pending_bytes > self.MAX_PENDING_BYTES \
                or len(self.pending) > self.MAX_PENDING_BATCHES:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self.pending.popleft()
        self.pending_bytes -= size
        future.result()  # re-raises the worker's exception

    def finish(self) -> None:
        self._flush()
        while self.pending:
            self._wait_oldest()

    def close(self) -> None:
        """Wait for every worker: a rollback must not race a file still being created."""
        self.batch = []
        self.pool.shutdown(wait=True, cancel_futures=True)


def _run_batch(batch: list[tuple[Any, tuple[Any, ...]]]) -> None:
    for fn, args in batch:
        fn(*args)


def _make_dir(path: str, mode: int) -> None:
    os.mkdir(path, mode & 0o777)
    if mode & 0o7000:
        os.chmod(path, mode)
    checkpoint()


def _make_symlink(temp: str, target: str, mtime: int) -> None:
    os.symlink(target, temp)
    os.utime(temp, (mtime, mtime), follow_symlinks=False)
    checkpoint()


def _write_file(temp: str, entry: FileEntry, pieces: Any, mtime: int, where: str,
                check: bool) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 entry.mode & 0o777)
    try:
        h = hashlib.sha256() if check else None
        for piece in pieces:
            if h is not None:
                h.update(piece)
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view):]
        if h is not None and h.hexdigest() != entry.sha256:
            raise PackageError(f"{where}: {entry.path} does not match its sha256 in "
                               "metadata.json", "the package is corrupt; rebuild it")
        if entry.mode & 0o7000:  # set after writing, which may clear setuid/setgid
            os.fchmod(fd, entry.mode)
        if entry.size >= WRITEBACK_MIN:
            start_writeback(fd)
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
    checkpoint()


def rollback(root: Path, db: Database, data: dict[str, Any]) -> None:
    """Undo phase 2: remove temporaries and the directories staging created."""
    for r in data["renames"]:
        try:
            os.unlink(r["temp"])
        except FileNotFoundError:
            pass
    for d, _mode in reversed(data["created"]):
        try:
            os.rmdir(d)
        except OSError:
            pass
    try:
        with db.transaction() as c:
            Database.clear_journal(c)
    except DiskFullError:
        pass  # the journal stays 'staging': the next writer's recover() repeats this rollback


def apply(root: Path, db: Database, data: dict[str, Any]) -> None:
    """Phase 4; idempotent, so recovery can run it again after a crash."""
    renames = data["renames"]
    for n, r in enumerate(renames):
        if n == len(renames) // 2:
            checkpoint("applying")
        if os.path.lexists(r["temp"]):
            os.replace(r["temp"], r["dest"])
            checkpoint()
    if not renames:
        checkpoint("applying")
    for path in data["deletes"]:
        try:
            if _kind_on_disk(path) != "dir":
                os.unlink(path)
        except FileNotFoundError:
            pass
        checkpoint()
    for d in data["rmdirs"]:
        try:
            os.rmdir(d)
        except OSError:
            pass
    sync_root(root)
    with db.transaction() as c:
        Database.clear_journal(c)
    checkpoint("applied")


def recover(root: Path, db: Database) -> str | None:
    """Finish or undo a transaction a previous mix run left; return what was done."""
    j = db.journal()
    if j is None:
        return None
    state, data = j
    if state == "staging":
        rollback(root, db, data)
        return "rolled back an interrupted transaction (nothing of it had been committed)"
    apply(root, db, data)
    return "completed an interrupted transaction"
