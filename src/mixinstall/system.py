"""The installed system's own configuration, written into its root after `mix`
installed the packages: mounts, host name, time zone, network, users and their
SSH keys, mix's repositories and keys, and the boot facts mixos-boot reads.
Package-owned files in /etc that are changed here (fstab, hostname, passwd...)
are configuration files: `mix verify` lists them as modified configuration."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mix.accounts import Accounts, authorize, replace_file
from mixboot import layout
from mixboot.kernels import BootConfig
from mixinstall.config import InstallConfig, User
from mixinstall.disk import FsIds
from mixinstall.plan import Plan

NETWORK_CONF = "etc/mixos/network.conf"
GROW_FLAG = "etc/mixos/grow-root"
INSTALL_LOG = "var/log/mixos-install.log"
# The drop-in that turns unprivileged user namespaces on (docs/security.md); the
# sysctl of mixos-hardening (10-mixos-kernel.conf) turns them off, and this later
# file wins.
USERNS_SYSCTL = "etc/sysctl.d/60-mixos-userns.conf"


def fstab(root: Path, plan: Plan, ids: FsIds, config: InstallConfig, swap_uuid: str) -> None:
    """The live system's fstab (kernel and RAM file systems) with the disk's own
    file systems, by UUID, in front."""
    path = root / "etc/fstab"
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")] if path.is_file() else []
    lines = [
        "# MixOS installed on a disk (mixos-install). Disk file systems by UUID;",
        "# <device> <mount point> <type> <options> <dump> <pass>",
        f"UUID={ids.root}  /  ext4  rw,relatime  0 1",
        f"UUID={ids.esp_fstab}  /boot/efi  vfat  nosuid,nodev,noexec,umask=0077  0 2",
    ]
    if plan.get(layout.SWAP) is not None:
        lines.append(f"UUID={swap_uuid}  none  swap  sw  0 0")
    if plan.get(layout.DATA) is not None:
        lines.append(f"UUID={ids.data}  {config.data_mount}  ext4  nosuid,nodev,relatime  0 2")
    lines += ["# kernel and RAM file systems", *kept]
    replace_file(path, "\n".join(lines) + "\n")
    (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    if plan.get(layout.DATA) is not None:
        (root / config.data_mount.lstrip("/")).mkdir(parents=True, exist_ok=True)


def host(root: Path, config: InstallConfig) -> None:
    replace_file(root / "etc/hostname", config.hostname + "\n")
    hosts = root / "etc/hosts"
    text = hosts.read_text() if hosts.is_file() else "127.0.0.1\tlocalhost\n"
    text = re.sub(r"(?m)^127\.0\.1\.1\s.*$", f"127.0.1.1\t{config.hostname}", text)
    if "127.0.1.1" not in text:
        text += f"127.0.1.1\t{config.hostname}\n"
    replace_file(hosts, text)


def timezone(root: Path, config: InstallConfig) -> str | None:
    """/etc/timezone, and /etc/localtime when tzdata is installed. Returns a warning."""
    replace_file(root / "etc/timezone", config.timezone + "\n")
    zone = root / "usr/share/zoneinfo" / config.timezone
    localtime = root / "etc/localtime"
    if zone.is_file():
        localtime.unlink(missing_ok=True)
        localtime.symlink_to(f"../usr/share/zoneinfo/{config.timezone}")
        return None
    if config.timezone not in ("UTC", "Etc/UTC"):
        return (f"time zone {config.timezone}: no zone file (the tzdata package is not "
                "installed); the system keeps UTC until it is")
    return None


def network(root: Path, config: InstallConfig) -> None:
    """/etc/mixos/network.conf, read by /etc/init.d/S30network at every boot."""
    n = config.network
    lines = ["# MixOS network (written by mixos-install; read by /etc/init.d/S30network).",
             "# mode=dhcp|static; interface=auto (the first virtio NIC) or a name.",
             f"mode={n.mode}", f"interface={n.interface}"]
    if n.mode == "static":
        lines += [f"address={n.address}", f"gateway={n.gateway}", f'dns="{" ".join(n.dns)}"']
    replace_file(root / NETWORK_CONF, "\n".join(lines) + "\n")
    if n.mode == "static" and n.dns:
        replace_file(root / "etc/resolv.conf", "".join(f"nameserver {d}\n" for d in n.dns))


def users(root: Path, config: InstallConfig) -> None:
    """Accounts with no password (shadow '*': key logins only), their groups, home
    directories and authorized SSH keys; root's keys from root_ssh_keys."""
    acc = Accounts.load(root)
    day = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) // 86400 or 20454
    made: list[tuple[User, int]] = []
    for u in config.users:
        if acc.user(u.name) is not None:
            raise ValueError(f"users: {u.name} already exists in the installed system")
        uid = acc.add_user(u.name, gecos=u.gecos, home=f"/home/{u.name}", shell=u.shell, day=day)
        for g in u.groups + (("wheel",) if u.admin else ()):
            acc.add_member(g, u.name)
        made.append((u, uid))
    acc.save()
    for u, uid in made:
        home = root / "home" / u.name
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(home, uid, uid)
        os.chmod(home, 0o700)
        if u.ssh_keys:
            authorize(root, f"/home/{u.name}", u.ssh_keys, uid, uid)
    if config.root_ssh_keys:
        authorize(root, "/root", config.root_ssh_keys, 0, 0)
        os.chmod(root / "root", 0o700)


def repositories(root: Path, config: InstallConfig) -> None:
    """The installed system's /etc/mix/repositories and the keys install.yaml gives.
    The boot medium's repository is not listed: the medium is gone after the install."""
    lines = ["# mix repositories, one URL a line (file://, http://, https://).",
             "# Written by mixos-install from install.yaml's repositories."]
    lines += [r.url for r in config.repositories]
    if not config.repositories:
        lines.append("# (none configured: add one, then run 'mix update')")
    replace_file(root / "etc/mix/repositories", "\n".join(lines) + "\n")
    for n, r in enumerate(config.repositories):
        if r.key:
            name = r.key_name or f"install-yaml-{n + 1}"
            replace_file(root / "etc/mix/keys" / f"{name}.pub", r.key.strip() + "\n")


def security(root: Path, config: InstallConfig) -> None:
    """install.yaml's security: switches, as the files the running system reads."""
    path = root / USERNS_SYSCTL
    if config.user_namespaces:
        replace_file(path, "# Written by mixos-install (install.yaml security.user_namespaces: true):\n"
                     "# unprivileged users may create user namespaces (rootless containers).\n"
                     "kernel.unprivileged_userns_clone = 1\n")
    else:
        path.unlink(missing_ok=True)


def boot_config(root: Path, config: InstallConfig, ids: FsIds, os_version: str) -> None:
    BootConfig(root_uuid=ids.root, kernel_args=config.kernel_args,
               os_version=os_version, grub_password=config.grub_password).save(root)


def grow_flag(root: Path, config: InstallConfig, plan: Plan) -> None:
    flag = root / GROW_FLAG
    if config.grow_root and plan.root_last:
        replace_file(flag, "# grow the root partition and file system to the disk at the next boot\n")
    else:
        flag.unlink(missing_ok=True)
