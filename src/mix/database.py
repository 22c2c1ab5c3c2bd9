"""The installed-package database: SQLite under ROOT/var/lib/mix/installed.db.

Tables: packages (metadata without the file list, and why it was installed), files
(path, type, sha256, mode, owner), scripts (kept for pre/post-remove), journal (at
most one row: the transaction in flight; see transaction.py), holds (packages upgrade
leaves alone) and history (each transaction: time, command, changes). Changes happen in one
SQLite transaction together with the journal's state change, so the database and the
journal never disagree.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mix.errors import DiskFullError, MixError, is_disk_full

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS packages (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    arch TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('explicit', 'dependency')),
    repo TEXT NOT NULL DEFAULT '',
    installed_at INTEGER NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT NOT NULL,
    package TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('file', 'dir', 'symlink')),
    sha256 TEXT NOT NULL DEFAULT '',
    mode INTEGER NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    config INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (path, package)
);
CREATE INDEX IF NOT EXISTS files_by_package ON files (package);
CREATE TABLE IF NOT EXISTS scripts (
    package TEXT NOT NULL,
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (package, name)
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
"""
# Tables added since schema version 1, without changing it: a mix that does not know
# them ignores them, so a database stays usable by older and newer mix alike. A writer
# creates them; readers of an older database find them missing (and read nothing).
ADDITIONS = """
CREATE TABLE IF NOT EXISTS holds (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    command TEXT NOT NULL,
    changes TEXT NOT NULL
);
"""


class Database:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.exists():
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Quoted: a '#', '?' or '%' in the root's path is part of the file name.
            uri = f"file:{quote(str(self.path))}" + ("?mode=ro" if readonly else "")
            try:
                self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10)
            except sqlite3.Error as e:
                raise MixError(f"cannot open the package database {self.path}: {e}") from None
        self.conn.row_factory = sqlite3.Row
        if readonly:
            self._roll_back_hot_journal()
        try:
            if not readonly:
                self.conn.execute("PRAGMA synchronous=FULL")
                # Deleted rows are zeroed, not left in free pages: the journal's temporary
                # names (host paths when building an image) never stay in the file.
                self.conn.execute("PRAGMA secure_delete=ON")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and not readonly:
                self.conn.executescript(SCHEMA + ADDITIONS)
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version == 0:
                self.conn.executescript(SCHEMA + ADDITIONS)
            elif version != SCHEMA_VERSION:
                raise MixError(f"{self.path} has schema version {version}; this mix knows "
                               f"{SCHEMA_VERSION}", "use a matching mix version")
            elif not readonly and not self._has_table("history"):
                self.conn.executescript(ADDITIONS)
        except sqlite3.DatabaseError as e:
            if is_disk_full(e):
                raise DiskFullError(f"disk full: cannot create the package database "
                                    f"{self.path} ({e})", "free some space on that "
                                    "filesystem, then run mix again") from None
            raise MixError(f"the package database {self.path} is unreadable: {e}",
                           "restore it from a backup") from None

    def _roll_back_hot_journal(self) -> None:
        """A mix killed inside a database transaction leaves a hot rollback journal,
        which SQLite must roll back before anyone reads, and a read-only connection
        cannot ("attempt to write a readonly database"). Whoever may write the state
        directory rolls it back through a read-write connection first (SQLite's own
        locks keep that safe against a running mix); others get the error below."""
        journal = self.path.with_name(self.path.name + "-journal")
        try:
            hot = journal.stat().st_size > 0
        except OSError:
            return
        if not hot or not os.access(self.path.parent, os.W_OK):
            return
        self.conn.close()
        try:
            rw = sqlite3.connect(f"file:{quote(str(self.path))}", uri=True,
                                 isolation_level=None, timeout=10)
            rw.execute("PRAGMA user_version").fetchone()
            rw.close()
        except sqlite3.Error as e:
            raise MixError(f"the package database {self.path} has an interrupted write "
                           f"that cannot be rolled back: {e}", "run mix as root") from None
        self.conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True,
                                    isolation_level=None, timeout=10)
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction; a full disk (at any statement or the commit) is reported
        as DiskFullError, with the transaction rolled back."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back by itself already (SQLITE_FULL does)
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as e:
            if is_disk_full(e):
                raise DiskFullError(f"disk full: cannot write the package database {self.path}"
                                    f" ({e}); its last committed state is kept",
                                    "free some space on that filesystem, then run mix "
                                    "again") from None
            raise

    # --- reads -----------------------------------------------------------------------
    def packages(self) -> list[dict[str, Any]]:
        """Installed packages as metadata dicts (no file list) with 'reason'."""
        rows = self.conn.execute("SELECT * FROM packages ORDER BY name").fetchall()
        return [self._row_entry(r) for r in rows]

    def package(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM packages WHERE name=?", (name,)).fetchone()
        return self._row_entry(row) if row else None

    @staticmethod
    def _row_entry(row: sqlite3.Row) -> dict[str, Any]:
        md = json.loads(row["metadata"])
        md.update(reason=row["reason"], repo=row["repo"], installed_at=row["installed_at"])
        return md

    def files(self, package: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM files WHERE package=? ORDER BY path",
                                 (package,)).fetchall()
        return [dict(r) for r in rows]

    def all_files(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM files ORDER BY path")]

    def owners(self, path: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM files WHERE path=? ORDER BY package", (path,))
        return [dict(r) for r in rows]

    def scripts(self, package: str) -> dict[str, bytes]:
        rows = self.conn.execute("SELECT name, body FROM scripts WHERE package=?", (package,))
        return {r["name"]: bytes(r["body"]) for r in rows}

    def _has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                 (name,)).fetchone() is not None

    def holds(self) -> set[str]:
        if not self._has_table("holds"):
            return set()
        return {r["name"] for r in self.conn.execute("SELECT name FROM holds")}

    def history(self) -> list[dict[str, Any]]:
        """The transactions, oldest first: id, time, command, changes."""
        if not self._has_table("history"):
            return []
        rows = self.conn.execute("SELECT * FROM history ORDER BY id").fetchall()
        return [{"id": r["id"], "time": r["time"], "command": r["command"],
                 "changes": json.loads(r["changes"])} for r in rows]

    def journal(self) -> tuple[str, dict[str, Any]] | None:
        row = self.conn.execute("SELECT state, data FROM journal WHERE id=1").fetchone()
        return (row["state"], json.loads(row["data"])) if row else None

    # --- writes (call inside transaction()) --------------------------------------------
    @staticmethod
    def put_package(c: sqlite3.Connection, md: dict[str, Any], reason: str, repo: str,
                    when: int, scripts: dict[str, bytes]) -> None:
        name = md["name"]
        Database.drop_package(c, name)
        stored = {k: v for k, v in md.items() if k not in ("files", "reason", "repo",
                                                             "installed_at")}
        c.execute("INSERT INTO packages VALUES (?,?,?,?,?,?,?)",
                  (name, md["version"], md["arch"], reason, repo, when,
                   json.dumps(stored, sort_keys=True)))
        c.executemany(
            "INSERT INTO files VALUES (?,?,?,?,?,?,?)",
            [(f["path"], name, f["type"], f.get("sha256", ""), f["mode"], f.get("target", ""),
              int(f.get("config", False))) for f in md["files"]])
        c.executemany("INSERT INTO scripts VALUES (?,?,?)",
                      [(name, k, v) for k, v in sorted(scripts.items())])

    @staticmethod
    def drop_package(c: sqlite3.Connection, name: str) -> None:
        c.execute("DELETE FROM packages WHERE name=?", (name,))
        c.execute("DELETE FROM files WHERE package=?", (name,))
        c.execute("DELETE FROM scripts WHERE package=?", (name,))

    @staticmethod
    def drop_file(c: sqlite3.Connection, path: str, package: str) -> None:
        c.execute("DELETE FROM files WHERE path=? AND package=?", (path, package))

    @staticmethod
    def set_reason(c: sqlite3.Connection, name: str, reason: str) -> None:
        c.execute("UPDATE packages SET reason=? WHERE name=?", (reason, name))

    @staticmethod
    def set_hold(c: sqlite3.Connection, name: str, held: bool) -> None:
        if held:
            c.execute("INSERT OR IGNORE INTO holds VALUES (?)", (name,))
        else:
            c.execute("DELETE FROM holds WHERE name=?", (name,))

    @staticmethod
    def add_history(c: sqlite3.Connection, when: int, command: str,
                    changes: list[dict[str, Any]]) -> None:
        c.execute("INSERT INTO history (time, command, changes) VALUES (?,?,?)",
                  (when, command, json.dumps(changes, sort_keys=True)))

    @staticmethod
    def set_journal(c: sqlite3.Connection, state: str, data: dict[str, Any]) -> None:
        c.execute("INSERT OR REPLACE INTO journal VALUES (1, ?, ?)", (state, json.dumps(data)))

    @staticmethod
    def clear_journal(c: sqlite3.Connection) -> None:
        c.execute("DELETE FROM journal")
