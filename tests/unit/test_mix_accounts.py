"""mix.accounts: the one writer of /etc/passwd, /etc/group and /etc/shadow that
mixos-install and mixos-cloud share."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mix.accounts import Accounts, authorize, replace_file
from mixinstall import system
from mixinstall.config import InstallConfig, User

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "sshd:x:100:65534::/run/sshd:/sbin/nologin\n"
          "alice:x:1000:1000::/home/alice:/bin/sh\n")
GROUP = "root:x:0:\nusers:x:100:\nwheel:x:10:\nalice:x:1000:\nold:x:1001:\n"
SHADOW = "root:*:20000:0:99999:7:::\nalice:*:20000:0:99999:7:::\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2ZgMMnm6/3J5xbj2Tdl1Y1iUKwS3aZ6ZCGtgaQ2M3a t@h"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "shadow").write_text(SHADOW)
    (etc / "shadow").chmod(0o600)
    return tmp_path


def test_new_user_takes_the_first_id_free_as_uid_and_gid(root: Path) -> None:
    acc = Accounts.load(root)
    uid = acc.add_user("bob", gecos="Bob", home="/home/bob", shell="/bin/sh", day=20454)
    acc.save()
    # 1000 is alice's, 1001 a group's: 1002 is free in both tables.
    assert uid == 1002
    etc = root / "etc"
    assert "bob:x:1002:1002:Bob:/home/bob:/bin/sh\n" in (etc / "passwd").read_text()
    assert "bob:x:1002:\n" in (etc / "group").read_text()
    assert "bob:*:20454:0:99999:7:::\n" in (etc / "shadow").read_text()


def test_an_existing_user_is_refused_and_nothing_is_written(root: Path) -> None:
    acc = Accounts.load(root)
    with pytest.raises(ValueError, match="alice already exists"):
        acc.add_user("alice", gecos="", home="/home/alice", shell="/bin/sh", day=1)
    assert (root / "etc/passwd").read_text() == PASSWD


def test_membership_makes_a_missing_group_with_a_system_id(root: Path) -> None:
    acc = Accounts.load(root)
    assert acc.add_member("wheel", "alice") is False
    assert acc.add_member("wheel", "alice") is False  # once only
    assert acc.add_member("ops", "alice") is True
    acc.save()
    text = (root / "etc/group").read_text()
    assert "wheel:x:10:alice\n" in text
    assert "ops:x:101:alice\n" in text  # 100 is a uid (sshd) and a gid (users)


def test_shadow_is_written_0600_whatever_the_umask(root: Path) -> None:
    old = os.umask(0)
    try:
        Accounts.load(root).save()
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "etc/shadow").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/passwd").stat().st_mode) == 0o644
    assert not list((root / "etc").glob(".*.new"))


def test_replace_file_that_fails_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        replace_file(target, None, 0o644)  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert not list(tmp_path.glob(".*.new"))


def test_authorize_adds_each_key_once(root: Path) -> None:
    assert authorize(root, "/home/alice", (KEY, KEY), 1000, 1000) == 1
    assert authorize(root, "/home/alice", (KEY,), 1000, 1000) == 0
    auth = root / "home/alice/.ssh/authorized_keys"
    assert auth.read_text() == KEY + "\n"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.parent.stat().st_mode) == 0o700


def test_installer_users_share_the_writer(root: Path) -> None:
    config = InstallConfig(disk="auto", users=(User("carol", ssh_keys=(KEY,), admin=True,
                                                    groups=("ops",)),),
                           root_ssh_keys=(KEY,))
    system.users(root, config)
    etc = root / "etc"
    assert "carol:x:1002:1002::/home/carol:/bin/sh\n" in (etc / "passwd").read_text()
    group = (etc / "group").read_text()
    assert "wheel:x:10:carol\n" in group and "ops:x:101:carol\n" in group
    assert (root / "home/carol/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert (root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    with pytest.raises(ValueError, match="carol already exists in the installed system"):
        system.users(root, config)
