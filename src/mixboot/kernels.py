"""The kernels of an installed MixOS system, its GRUB menu, and the one-shot
trial of a new kernel with automatic fallback.

Where things are (paths relative to the system's root):

    usr/lib/linux/<ver>/vmlinuz, initramfs.img   what the `linux` package installs
    boot/<ver>/vmlinuz, initramfs.img            what GRUB boots: hard links (copies
                                                 when /boot is another file system)
                                                 made here, so a kernel stays bootable
                                                 after `mix upgrade` removed its package
    boot/grub/grub.cfg                           the menu (menu.py), rewritten here
    boot/grub/grubenv                            GRUB's environment block:
                                                   mixos_good   the kernel last proven good
                                                   mixos_trial  a new kernel to boot once
    etc/mixos/boot.json                          the installed system's boot facts
                                                 (root file system UUID, extra kernel
                                                 arguments, the GRUB password's hash),
                                                 written by the installer

The life of a kernel upgrade:
 1. `mix upgrade` installs a new `linux`; its post-upgrade script runs `mixos-boot
    update`: the new kernel is linked into /boot, the menu lists it first and
    the previous one, and mixos_trial names the new one.
 2. At the next boot GRUB boots mixos_trial once: it clears the variable in the
    environment block *before* booting it (save_env), with mixos_good as GRUB's
    fallback should the kernel file fail to load.
 3. The new kernel reaches userspace: the boot's S90bootok step runs `mixos-boot
    mark-good`, mixos_good becomes the new kernel. If it never gets there (a panic
    reboots: the kernel is built with panic_timeout=-1), the next boot finds no
    trial and boots mixos_good, the previous kernel, by itself.
 4. At most two kernels stay in /boot: the installed one and one before it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mixboot import cmdline, durable, grubenv
from mixboot.menu import MenuKernel, check_password_hash, disk_menu

KERNELS = Path("usr/lib/linux")
BOOT = Path("boot")
GRUB_DIR = Path("boot/grub")
BOOT_CONFIG = Path("etc/mixos/boot.json")
KERNEL_FILES = ("vmlinuz", "initramfs.img")
GOOD = "mixos_good"
TRIAL = "mixos_trial"
KERNEL_ARG = cmdline.KERNEL_ARG


class BootError(RuntimeError):
    """The boot configuration cannot be updated; the message says why."""


@dataclass(frozen=True)
class BootConfig:
    root_uuid: str
    kernel_args: str = ""
    os_version: str = ""
    # The GRUB password's PBKDF2 hash (menu.GRUB_PASSWORD_PATTERN), or "": none.
    grub_password: str = ""

    @classmethod
    def load(cls, root: Path) -> BootConfig | None:
        path = root / BOOT_CONFIG
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(root_uuid=str(data["root_uuid"]),
                       kernel_args=str(data.get("kernel_args", "")),
                       os_version=str(data.get("os_version", "")),
                       grub_password=check_password_hash(str(data.get("grub_password", ""))))
        except (ValueError, KeyError, TypeError) as e:
            raise BootError(f"{path}: not a valid boot configuration ({e})") from None

    def save(self, root: Path) -> None:
        path = root / BOOT_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"root_uuid": self.root_uuid, "kernel_args": self.kernel_args,
                "os_version": self.os_version}
        if self.grub_password:
            data["grub_password"] = self.grub_password
        # Root only: the password hash can be attacked offline.
        durable.write_text(path, json.dumps(data, indent=2) + "\n", mode=0o600)


def version_key(ver: str) -> list[tuple[int, int | str]]:
    """Natural order: 6.1.10 after 6.1.9."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", ver) if p]


def installed_kernel(root: Path) -> str | None:
    """The newest kernel the `linux` package has installed, or None."""
    d = root / KERNELS
    found = [p.name for p in d.iterdir() if (p / "vmlinuz").is_file()] if d.is_dir() else []
    return max(found, key=version_key) if found else None


def boot_kernels(root: Path) -> list[str]:
    d = root / BOOT
    if not d.is_dir():
        return []
    return sorted((p.name for p in d.iterdir()
                   if p.is_dir() and p.name != "grub" and (p / "vmlinuz").is_file()),
                  key=version_key, reverse=True)


def env_path(root: Path) -> Path:
    return root / GRUB_DIR / "grubenv"


def read_env(root: Path) -> dict[str, str]:
    path = env_path(root)
    return grubenv.load(path) if path.is_file() else {}


def set_env(root: Path, **values: str) -> None:
    path = env_path(root)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        grubenv.create(path)
    env = grubenv.load(path)
    env.update(values)
    grubenv.save(path, env)


def sync_boot(root: Path, keep: set[str]) -> list[str]:
    """Link the installed kernel into /boot, then keep only KEEP and it (at most
    one other, the newest of KEEP). Returns the kernels in /boot, newest first."""
    new = installed_kernel(root)
    if new is not None:
        dst = root / BOOT / new
        dst.mkdir(parents=True, exist_ok=True)
        for name in KERNEL_FILES:
            src = root / KERNELS / new / name
            if src.is_file():
                durable.link_or_copy(src, dst / name)
    others = [k for k in boot_kernels(root) if k != new and k in keep]
    wanted = ([new] if new else []) + others[:1]
    for k in boot_kernels(root):
        if k not in wanted:
            shutil.rmtree(root / BOOT / k)
    return [k for k in boot_kernels(root) if k in wanted]


def write_menu(root: Path, config: BootConfig, kernels: list[str], installed: str | None,
               hardening: str) -> Path:
    good = read_env(root).get(GOOD, "")
    ordered = sorted(kernels, key=lambda k: k != good)  # the good one first, else as given
    entries = [MenuKernel(version=k, previous=(k != installed)) for k in ordered]
    text = disk_menu(entries, os_version=config.os_version, root_uuid=config.root_uuid,
                     hardening=hardening, extra=config.kernel_args,
                     password_hash=config.grub_password)
    path = root / GRUB_DIR / "grub.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    # With a password the menu holds its hash: readable by root only (GRUB reads the
    # disk, not Unix permissions).
    durable.write_text(path, text, mode=0o600 if config.grub_password else 0o644)
    return path


def hardening_args(root: Path) -> str:
    return cmdline.read_hardening(root / cmdline.INSTALLED_HARDENING_FILE.lstrip("/"))


def update(root: Path) -> str:
    """Bring /boot and the menu in line with the installed kernel (see the module
    docstring). Returns a one-line account of what was done."""
    config = BootConfig.load(root)
    if config is None:
        return (f"{root / BOOT_CONFIG} does not exist: not an installed MixOS system "
                "(a live system boots the kernel on its medium); nothing to do")
    new = installed_kernel(root)
    if new is None:
        raise BootError(f"no kernel under {root / KERNELS}; install the 'linux' package")
    env = read_env(root)
    good = env.get(GOOD, "")
    kernels = sync_boot(root, keep={good} if good else set())
    if good not in kernels:
        # A first install (or a good kernel that is gone): trust the installed one.
        good = new
        set_env(root, **{GOOD: new, TRIAL: ""})
        how = f"kernel {new} installed as the default"
    elif good != new:
        set_env(root, **{TRIAL: new})
        how = (f"kernel {new} will be tried once at the next boot; "
               f"{good} stays the fallback until {new} reaches userspace")
    else:
        how = f"kernel {new} is the default"
    write_menu(root, config, kernels, new, hardening_args(root))
    return how


def running_kernel(cmdline: str) -> str | None:
    for arg in cmdline.split():
        if arg.startswith(KERNEL_ARG + "="):
            return arg.split("=", 1)[1]
    return None


def mark_good(root: Path, cmdline: str) -> str:
    """Called once the booted kernel reached userspace: it becomes mixos_good,
    and the kernel two generations back leaves /boot."""
    config = BootConfig.load(root)
    running = running_kernel(cmdline)
    if config is None or running is None:
        return "not booted from an installed MixOS disk; nothing to mark"
    env = read_env(root)
    if env.get(GOOD) == running:
        return f"kernel {running} is the known-good default"
    previous = env.get(GOOD, "")
    set_env(root, **{GOOD: running})
    kernels = sync_boot(root, keep={previous, running})
    write_menu(root, config, kernels, installed_kernel(root), hardening_args(root))
    return f"kernel {running} reached userspace: now the default (was {previous or 'none'})"


def status(root: Path, cmdline: str) -> dict[str, object]:
    env = read_env(root)
    return {"installed": installed_kernel(root), "in_boot": boot_kernels(root),
            "good": env.get(GOOD) or None, "trial": env.get(TRIAL) or None,
            "running": running_kernel(cmdline)}
