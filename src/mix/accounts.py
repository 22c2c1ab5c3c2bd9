"""The account tables of a MixOS root: /etc/passwd, /etc/group and /etc/shadow.

One writer for everything that makes accounts from a description: mixos-install
(install.yaml's users) and mixos-cloud (user-data's users). Rows are read as
lists of fields, changed in memory, and written back whole, each file replaced
atomically with its own mode (shadow is never readable by others, not even its
temporary copy).

    acc = Accounts.load(root)
    uid = acc.add_user("alice", gecos="", home="/home/alice", shell="/bin/sh", day=20454)
    acc.add_member("wheel", "alice")
    acc.save()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FIRST_UID = 1000          # people
FIRST_SYSTEM_UID = 100    # groups made because somebody was named a member of them


def replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write TEXT to PATH through a temporary file beside it, created with MODE,
    synced, then renamed over PATH (readers see the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have taken bits away
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line.strip()]


def authorize(root: Path, home: str, keys: tuple[str, ...], uid: int, gid: int) -> int:
    """Add KEYS to HOME/.ssh/authorized_keys (inside ROOT); returns how many were new."""
    ssh = root / home.lstrip("/") / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    auth = ssh / "authorized_keys"
    existing = auth.read_text().splitlines() if auth.is_file() else []
    new = [k for k in dict.fromkeys(keys) if k not in existing]
    replace_file(auth, "".join(f"{k}\n" for k in existing + new), 0o600)
    for p in (ssh, auth):
        os.chown(p, uid, gid)
    os.chmod(ssh, 0o700)
    return len(new)


@dataclass
class Accounts:
    etc: Path
    passwd: list[list[str]]
    group: list[list[str]]
    shadow: list[list[str]]

    @classmethod
    def load(cls, root: Path) -> Accounts:
        etc = root / "etc"
        return cls(etc, _rows(etc / "passwd"), _rows(etc / "group"), _rows(etc / "shadow"))

    def user(self, name: str) -> list[str] | None:
        """NAME's passwd row (name, x, uid, gid, gecos, home, shell), or None."""
        return next((r for r in self.passwd if r[0] == name), None)

    def shadow_row(self, name: str, day: int) -> list[str]:
        """NAME's shadow row, made locked ('*': no password, SSH keys only; not '!',
        which sshd without PAM takes as "no login at all") when it has none."""
        row = next((r for r in self.shadow if r[0] == name), None)
        if row is None:
            row = [name, "*", str(day), "0", "99999", "7", "", "", ""]
            self.shadow.append(row)
        return row

    def new_id(self, first: int) -> int:
        """The lowest id from FIRST on that is neither a user's nor a group's."""
        used = {int(r[2]) for r in self.passwd} | {int(r[2]) for r in self.group}
        n = first
        while n in used:
            n += 1
        return n

    def add_user(self, name: str, *, gecos: str, home: str, shell: str, day: int,
                 first: int = FIRST_UID) -> int:
        """A new user NAME with a group of the same name and id; returns the id."""
        if self.user(name) is not None:
            raise ValueError(f"user {name} already exists")
        uid = self.new_id(first)
        self.group.append([name, "x", str(uid), ""])
        self.passwd.append([name, "x", str(uid), str(uid), gecos, home, shell])
        self.shadow_row(name, day)
        return uid

    def add_member(self, group: str, member: str) -> bool:
        """Put MEMBER in GROUP, made (with a system id) when it does not exist;
        returns whether the group was made."""
        for r in self.group:
            if r[0] == group:
                members = [m for m in r[3].split(",") if m]
                if member not in members:
                    r[3] = ",".join(members + [member])
                return False
        self.group.append([group, "x", str(self.new_id(FIRST_SYSTEM_UID)), member])
        return True

    def save(self) -> None:
        for name, rows, mode in (("passwd", self.passwd, 0o644), ("group", self.group, 0o644),
                                 ("shadow", self.shadow, 0o600)):
            replace_file(self.etc / name, "".join(":".join(r) + "\n" for r in rows), mode)
