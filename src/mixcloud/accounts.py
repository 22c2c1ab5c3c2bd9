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

from mix.accounts import FIRST_SYSTEM_UID, FIRST_UID, Accounts, authorize, replace_file
from mixcloud import doas
from mixcloud.userdata import User

DOAS_CONF = "etc/doas.conf"
BEGIN = "# mixos-cloud: rules from the user-data's sudo: (begin)"
END = "# mixos-cloud: (end)"


def apply_users(root: Path, users: tuple[User, ...], day: int) -> list[str]:
    """Create USERS (or update those that exist: groups, keys, password); returns
    what was done, one line each, for the log."""
    acc = Accounts.load(root)
    done: list[str] = []
    homes: list[tuple[User, int, int]] = []
    for u in users:
        row = acc.user(u.name)
        if row is None:
            uid = gid = acc.add_user(u.name, gecos=u.gecos, home=u.home, shell=u.shell, day=day,
                                     first=FIRST_SYSTEM_UID if u.system else FIRST_UID)
            done.append(f"user {u.name} created (uid {uid})")
        else:
            uid, gid = int(row[2]), int(row[3])
            done.append(f"user {u.name} exists (uid {uid}): groups and keys added")
        srow = acc.shadow_row(u.name, day)
        if u.hashed_passwd and not u.lock_passwd:
            srow[1] = u.hashed_passwd
        elif u.lock_passwd:
            srow[1] = "*"
        for g in u.groups:
            if acc.add_member(g, u.name):
                done.append(f"group {g} created")
        homes.append((u, uid, gid))
    acc.save()
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
    replace_file(path, "\n".join(lines) + "\n", 0o600)
