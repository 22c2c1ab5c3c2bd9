"""users: accounts in /etc/passwd, /etc/group and /etc/shadow, home directories,
authorized SSH keys, and the doas rules translated from `sudo:`.

Passwords: an account gets no password ('*' in /etc/shadow: SSH keys only) unless
the user-data gives a crypt(3) hash with lock_passwd: false. A locked account is
'*', not '!': OpenSSH without PAM (MixOS's sshd) refuses every login, keys too,
to an account whose hash starts with '!'.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixcloud import doas
from mixcloud.userdata import User

FIRST_UID = 1000
FIRST_SYSTEM_UID = 100
DOAS_CONF = "etc/doas.conf"
BEGIN = "# mixos-cloud: rules from the user-data's sudo: (begin)"
END = "# mixos-cloud: (end)"


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _table(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line.strip()]


def _save(path: Path, rows: list[list[str]], mode: int) -> None:
    _write(path, "".join(":".join(r) + "\n" for r in rows), mode)


def authorize(root: Path, home: str, keys: tuple[str, ...], uid: int, gid: int) -> int:
    """Add KEYS to HOME/.ssh/authorized_keys (inside ROOT); returns how many were new."""
    ssh = root / home.lstrip("/") / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    auth = ssh / "authorized_keys"
    existing = auth.read_text().splitlines() if auth.is_file() else []
    new = [k for k in dict.fromkeys(keys) if k not in existing]
    _write(auth, "".join(f"{k}\n" for k in existing + new), 0o600)
    for p in (ssh, auth):
        os.chown(p, uid, gid)
    os.chmod(ssh, 0o700)
    return len(new)


def apply_users(root: Path, users: tuple[User, ...], day: int) -> list[str]:
    """Create USERS (or update those that exist: groups, keys, password); returns
    what was done, one line each, for the log."""
    etc = root / "etc"
    passwd, group, shadow = _table(etc / "passwd"), _table(etc / "group"), _table(etc / "shadow")
    used = {int(r[2]) for r in passwd} | {int(r[2]) for r in group}
    done: list[str] = []

    def new_id(first: int) -> int:
        n = first
        while n in used:
            n += 1
        used.add(n)
        return n

    def add_member(name: str, member: str) -> None:
        for r in group:
            if r[0] == name:
                members = [m for m in r[3].split(",") if m]
                if member not in members:
                    r[3] = ",".join(members + [member])
                return
        group.append([name, "x", str(new_id(FIRST_SYSTEM_UID)), member])
        done.append(f"group {name} created")

    homes: list[tuple[User, int, int]] = []
    for u in users:
        row = next((r for r in passwd if r[0] == u.name), None)
        if row is None:
            uid = new_id(FIRST_SYSTEM_UID if u.system else FIRST_UID)
            group.append([u.name, "x", str(uid), ""])
            passwd.append([u.name, "x", str(uid), str(uid), u.gecos, u.home, u.shell])
            shadow.append([u.name, "*", str(day), "0", "99999", "7", "", "", ""])
            gid = uid
            done.append(f"user {u.name} created (uid {uid})")
        else:
            uid, gid = int(row[2]), int(row[3])
            done.append(f"user {u.name} exists (uid {uid}): groups and keys added")
        srow = next((r for r in shadow if r[0] == u.name), None)
        if srow is None:
            srow = [u.name, "*", str(day), "0", "99999", "7", "", "", ""]
            shadow.append(srow)
        if u.hashed_passwd and not u.lock_passwd:
            srow[1] = u.hashed_passwd
        elif u.lock_passwd:
            srow[1] = "*"
        for g in u.groups:
            add_member(g, u.name)
        homes.append((u, uid, gid))
    _save(etc / "passwd", passwd, 0o644)
    _save(etc / "group", group, 0o644)
    _save(etc / "shadow", shadow, 0o600)
    for u, uid, gid in homes:
        home = root / u.home.lstrip("/")
        if not home.exists():
            home.mkdir(mode=0o700, parents=True)
            os.chown(home, uid, gid)
        if u.ssh_keys:
            n = authorize(root, u.home, u.ssh_keys, uid, gid)
            done.append(f"{u.name}: {n} SSH key(s) added")
            os.chown(home, uid, gid)
    return done


def has_password(users: tuple[User, ...]) -> bool:
    return any(u.hashed_passwd and not u.lock_passwd for u in users)


def doas_rules(users: tuple[User, ...]) -> list[str]:
    return [line for u in users for rule in u.sudo for line in doas.translate(u.name, rule)]


def apply_doas(root: Path, rules: list[str]) -> None:
    """Put RULES into /etc/doas.conf, in mixos-cloud's own block (replaced whole,
    so a new instance does not pile up the rules of an old one)."""
    path = root / DOAS_CONF
    text = path.read_text() if path.is_file() else ""
    lines = text.splitlines()
    if BEGIN in lines and END in lines:
        lines = lines[:lines.index(BEGIN)] + lines[lines.index(END) + 1:]
    if rules:
        lines += [BEGIN, *rules, END]
    _write(path, "\n".join(lines) + "\n", 0o600)
