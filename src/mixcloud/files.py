"""write_files: each file written whole under a temporary name and renamed (or
appended to), with its mode and owner."""

from __future__ import annotations

import os
from pathlib import Path

from mixcloud.userdata import WriteFile


def owner_ids(owner: str, root: Path) -> tuple[int, int]:
    """uid and gid of 'user:group' (or 'user'), looked up in ROOT's /etc/passwd and
    /etc/group (the target's own: unit tests use a directory as the root)."""
    user, _, group = owner.partition(":")

    def lookup(table: str, name: str) -> int | None:
        if name.isdigit():
            return int(name)
        path = root / "etc" / table
        if path.is_file():
            for line in path.read_text().splitlines():
                f = line.split(":")
                if f[0] == name and len(f) > 2:
                    return int(f[2])
        return None

    uid = lookup("passwd", user)
    if uid is None:
        raise ValueError(f"owner {owner!r}: no user {user!r}")
    gid = lookup("group", group or user)
    if gid is None:
        raise ValueError(f"owner {owner!r}: no group {group or user!r}")
    return uid, gid


def write(root: Path, f: WriteFile) -> None:
    path = root / f.path.lstrip("/")
    uid, gid = owner_ids(f.owner, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    if f.append:
        with open(path, "ab") as out:
            out.write(f.content)
    else:
        tmp = path.with_name(f".{path.name}.mixos-cloud")
        tmp.write_bytes(f.content)
        tmp.replace(path)
    os.chown(path, uid, gid)
    os.chmod(path, f.permissions)
