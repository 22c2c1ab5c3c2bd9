"""Resolve package paths inside a root without ever leaving it.

A package path like /lib/x.so must land inside ROOT even when /lib is a symlink (merged
/usr), and must never be written through a symlink that leads outside ROOT. Resolution
follows the semantics the path will have once ROOT is the running system's / (absolute
link targets are re-rooted at ROOT); a relative target that climbs above the root is
refused. Symlinks planned by the current transaction count as if already on disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mix.errors import TransactionError

MAX_HOPS = 40


class RootResolver:
    def __init__(self, root: Path, planned: dict[str, tuple[str, str]] | None = None) -> None:
        """planned maps a logical path to (type, symlink target) for entries being installed."""
        self.root = str(Path(root).absolute()).rstrip("/")
        self.planned = planned or {}
        self._cache: dict[str, str] = {}

    def disk(self, logical: str) -> str:
        return self.root + logical

    def _kind(self, logical: str) -> tuple[str, str]:
        planned = self.planned.get(logical)
        if planned is not None and planned[0] != "dir":
            return planned  # a symlink or file this transaction puts there
        try:
            st = os.lstat(self.root + logical)
        except FileNotFoundError:
            return ("dir", "") if planned is not None else ("missing", "")
        except NotADirectoryError:
            return "file", ""
        if stat.S_ISLNK(st.st_mode):
            return "symlink", os.readlink(self.root + logical)
        if stat.S_ISDIR(st.st_mode):
            return "dir", ""
        return "file", ""

    def resolve_dir(self, logical: str, why: str) -> str:
        """The logical directory that logical names, after following symlinks in the root."""
        if logical in ("", "/"):
            return ""
        cached = self._cache.get(logical)
        if cached is not None:
            return cached
        stack = list(reversed(logical.strip("/").split("/")))
        cur, hops = "", 0
        outside: tuple[str, str] | None = None  # the first link to a host path out of the root
        while stack:
            part = stack.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not cur and not self.root:
                    continue  # the root is /: '..' at the top stays there, as for the kernel
                if not cur:
                    raise TransactionError(
                        f"{why}: a symlink on the way to {logical} leads outside the root "
                        f"{self.root}", "refusing to write through it; remove or fix the symlink")
                cur = cur.rsplit("/", 1)[0]
                continue
            nxt = f"{cur}/{part}"
            kind, target = self._kind(nxt)
            if kind == "symlink":
                hops += 1
                if outside is None and self.root and target.startswith("/") \
                        and not (target + "/").startswith(self.root + "/"):
                    outside = (nxt, target)
                if hops > MAX_HOPS:
                    if outside is not None:
                        # e.g. ROOT/usr -> /usr: inside the root that is ROOT/usr again
                        raise TransactionError(
                            f"{why}: {self.root}{outside[0]} is a symlink outside the root "
                            f"(to {outside[1]})",
                            "inside the root an absolute link target means ROOT + target; "
                            f"make {self.root}{outside[0]} a directory of the root")
                    raise TransactionError(f"{why}: too many levels of symlinks at {nxt}")
                if target.startswith("/"):
                    cur = ""
                stack.extend(reversed(target.split("/")))
            elif kind in ("dir", "missing"):
                cur = nxt
            else:
                raise TransactionError(f"{why}: {nxt} (on the way to {logical}) is a file, "
                                       "not a directory")
        self._cache[logical] = cur
        return cur

    def target(self, logical: str, why: str) -> str:
        """Where an entry is written: its resolved parent + its own name (never followed)."""
        parent, _, name = logical.rpartition("/")
        return self.resolve_dir(parent, why) + "/" + name
