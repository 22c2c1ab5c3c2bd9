"""One installation, step by step (the unattended ISO's mixos-install and the
build host's `make viso` both run this):

 1. check      the disk exists, is not the boot medium, is not mounted, holds no
               data (or wipe: true), and the partition plan fits: nothing written
 2. partition  GPT by mixboot.layout (sfdisk); file systems with chosen UUIDs
 3. mount      the root file system at the target directory
 4. packages   `mix --root TARGET install mixos-base linux ...` from the boot
               medium's repository and/or install.yaml's; the linux package's
               script links the kernel into /boot and writes GRUB's menu
 5. configure  fstab, host name, time zone, network, users and keys, mix's
               repositories and keys, security switches (system.py)
 6. boot       GRUB for BIOS and UEFI (mixboot.bootloader; the EFI system partition
               is filled with mtools, unmounted), menu and environment
 7. finish     the log to /var/log/mixos-install.log, unmount, sync

A failure at any step leaves the disk half-written (nothing boots from it) but
never touches another disk; the message names the step and the command.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mixboot import bootloader, kernels, layout
from mixinstall import disk, system
from mixinstall.config import InstallConfig
from mixinstall.disk import FsIds
from mixinstall.plan import Plan, PlanError, make_plan
from mixinstall.steps import InstallError, Progress

MEDIUM_REPO = Path("/run/mixos/medium/repo")
BASE_PACKAGES = ("mixos-base", "linux")
GROW_PACKAGE = "mixos-growroot"
# How install.yaml's admins (group wheel) become root: nobody has a password.
ADMIN_PACKAGE = "doas"


@dataclass(frozen=True)
class Sources:
    """Where packages come from, and who is trusted to sign them."""

    repos: tuple[str, ...] = ()
    keys_dirs: tuple[Path, ...] = (Path("/etc/mix/keys"),)
    mix: tuple[str, ...] = ("mix",)  # the mix command (the build host passes its own)


@dataclass
class Result:
    device: str = ""
    plan: Plan | None = None
    ids: FsIds = field(default_factory=FsIds)
    warnings: list[str] = field(default_factory=list)


def os_version(root: Path) -> str:
    for line in (root / "usr/lib/os-release").read_text().splitlines():
        if line.startswith("VERSION_ID="):
            return line.split("=", 1)[1].strip('"')
    return ""


def complete_repo(path: Path) -> bool:
    """Whether the repository at PATH holds the file of every package its index
    lists (the unattended ISO's does; the live ISO's carries only what its root
    image lacks, which is not enough to install a system)."""
    try:
        index = json.loads((path / "index.json").read_text())
        return all((path / p["filename"]).is_file() for p in index["packages"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def default_sources(config: InstallConfig, extra_repos: tuple[str, ...] = ()) -> Sources:
    repos: list[str] = list(extra_repos)
    if config.use_medium_repository and not repos and complete_repo(MEDIUM_REPO):
        repos.append(f"file://{MEDIUM_REPO}")
    repos += [r.url for r in config.repositories]
    return Sources(repos=tuple(repos))


def packages_for(config: InstallConfig, plan: Plan) -> list[str]:
    wanted = list(BASE_PACKAGES)
    if config.grow_root and plan.root_last:
        wanted.append(GROW_PACKAGE)
    if any(u.admin for u in config.users):
        wanted.append(ADMIN_PACKAGE)
    return wanted + [p for p in config.packages if p not in wanted]


def check(config: InstallConfig, progress: Progress, *, allow_file: bool = False) -> Result:
    """Step 1: choose and check the disk and the plan; nothing is written."""
    res = Result()
    res.device = disk.first_empty_disk() if config.disk == "auto" else config.disk
    # In the order a person would fix them: the wrong disk, then its size, then its data.
    disk.check_target(res.device, need_mib=0, wipe=True, allow_file=allow_file)
    size_mib = disk.device_size(res.device) // (1024 * 1024)
    try:
        res.plan = make_plan(config, size_mib)
    except PlanError as e:
        raise InstallError(f"disk {res.device}: {e}") from None
    disk.check_target(res.device, need_mib=0, wipe=config.wipe, allow_file=allow_file)
    progress.log(f"target disk {res.device}, {size_mib} MiB; partitions:")
    for line in res.plan.describe():
        progress.log(f"  {line}")
    return res


def _keys_dir(config: InstallConfig, sources: Sources, tmp: Path) -> Path:
    keys = tmp / "keys"
    keys.mkdir()
    for d in sources.keys_dirs:
        if d.is_dir():
            for pub in sorted(d.glob("*.pub")):
                shutil.copyfile(pub, keys / pub.name)
    for n, r in enumerate(config.repositories):
        if r.key:
            (keys / f"{r.key_name or f'install-yaml-{n + 1}'}.pub").write_text(r.key.strip() + "\n")
    return keys


def install(config: InstallConfig, target: Path, progress: Progress, *,
            sources: Sources | None = None, allow_file: bool = False) -> Result:
    """Lay MixOS onto the disk CONFIG names, with TARGET as the mount point."""
    with progress.step("Checking the disk and the plan"):
        res = check(config, progress, allow_file=allow_file)
    assert res.plan is not None
    sources = sources or default_sources(config)
    if not sources.repos:
        raise InstallError("no package repository: the boot medium has no complete one at "
                           f"{MEDIUM_REPO} (the live ISO's holds only what its image lacks; "
                           "boot the unattended ISO, 'make iso-autoinstall') and install.yaml "
                           "lists no repositories:")
    dev = res.device
    target_disk = disk.Target(dev, disk.device_size(dev))
    with progress.step(f"Partitioning {dev} (GPT) and making file systems"):
        disk.partition(progress, target_disk, res.plan, res.ids)
        disk.make_filesystems(progress, dev, res.plan, res.ids)
        swap_uuid = ""
        if res.plan.get(layout.SWAP) is not None:
            swap_uuid = read_uuid(progress, layout.partition_device(dev, layout.SWAP))
    target.mkdir(parents=True, exist_ok=True)
    mounted: list[Path] = []
    try:
        with progress.step(f"Mounting the new root file system on {target}"):
            progress.run(["mount", "-t", "ext4", layout.partition_device(dev, layout.ROOT), target])
            mounted.append(target)
            (target / "boot/efi").mkdir(parents=True, exist_ok=True)
        wanted = packages_for(config, res.plan)
        with progress.step(f"Installing {len(wanted)} packages and their dependencies "
                           f"with mix from {', '.join(sources.repos)}"), \
                tempfile.TemporaryDirectory(prefix="mixos-install-") as tmp:
            keys = _keys_dir(config, sources, Path(tmp))
            # Before the packages: the linux package's script reads it to write the menu.
            system_boot_placeholder(target, config, res)
            argv = [*sources.mix, "--root", str(target), "--keys-dir", str(keys), "-y"]
            for url in sources.repos:
                argv += ["--repo", url]
            out = progress.run([*argv, "install", *wanted], timeout=1800)
            progress.log(out.strip().splitlines()[-1] if out.strip() else "installed",
                         console=False)
        with progress.step("Configuring the installed system"):
            system.boot_config(target, config, res.ids, os_version(target))
            system.fstab(target, res.plan, res.ids, config, swap_uuid)
            system.host(target, config)
            warning = system.timezone(target, config)
            if warning:
                res.warnings.append(warning)
                progress.log(f"warning: {warning}")
            system.network(target, config)
            system.users(target, config)
            system.repositories(target, config)
            system.security(target, config)
            system.grow_flag(target, config, res.plan)
        with progress.step("Installing GRUB for BIOS and UEFI"):
            esp = Path(tempfile.mkdtemp(prefix="mixos-esp-"))
            try:
                bootloader.install(dev, kit=target / "usr/lib/mixos/grub", esp_mount=esp)
                fill_esp(progress, layout.partition_device(dev, layout.ESP), esp)
                progress.log(f"menu: {kernels.update(target)}")
            except (bootloader.BootloaderError, kernels.BootError) as e:
                raise InstallError(f"the boot loader could not be installed: {e}") from None
            finally:
                shutil.rmtree(esp, ignore_errors=True)
        host_keys = sorted(p.name for p in (target / "etc/ssh").glob("ssh_host_*"))
        if host_keys:
            # Each system makes its own at first boot (S50sshd); a copied disk or VISO
            # must not share them.
            raise InstallError(f"the installed system carries SSH host keys ({', '.join(host_keys)}); "
                               "they must be made per instance at first boot")
        progress.log(f"installed: MixOS {os_version(target)} on {dev}")
        progress.save(target / system.INSTALL_LOG)
    finally:
        for m in reversed(mounted):
            try:
                progress.run(["umount", m])
            except InstallError as e:
                progress.log(f"warning: {e}")
        os.sync()
    return res


def fill_esp(progress: Progress, device: str, tree: Path) -> None:
    """Copy TREE into the EFI system partition's FAT file system with mtools, without
    mounting it (the same on every host, whether its kernel reads FAT or not)."""
    for top in sorted(tree.iterdir()):
        progress.run(["mcopy", "-s", "-o", "-i", device, top, "::/"],
                     env={"MTOOLS_SKIP_CHECK": "1"})


def system_boot_placeholder(target: Path, config: InstallConfig, res: Result) -> None:
    """The boot facts mixos-boot needs before the kernel package's script runs (the
    OS version is filled in once base-files is installed)."""
    system.boot_config(target, config, res.ids, os_version="")


def read_uuid(progress: Progress, device: str) -> str:
    out = progress.run(["blkid", device])
    for field_ in out.split():
        if field_.startswith("UUID="):
            return field_.split("=", 1)[1].strip('"')
    raise InstallError(f"blkid shows no UUID for {device}: {out.strip()}")
