"""VRAM, the whole system in RAM: what this boot decided, and the choice kept for
the next boots.

The initramfs decides at boot (VRAM=on|off|auto on the kernel command line,
initramfs/init) and writes what it did to /run/mixos/boot.env. The normal boot
entries of an installed disk's and an SDISK's menu pass VRAM=${mixos_vram}, a
variable of GRUB's environment block (mixboot.menu): `enable` and `disable` set
it there. The live ISO is read-only: its choice is made at each boot (the menu's
VRAM entry, or a key on the serial console).

What "in RAM" means per medium:
  iso, sdisk  the root image (squashfs) is copied into a tmpfs; the medium (and
              the SDISK's partition) is released. The system's writes were in
              RAM already (the overlay).
  disk        the installed root file system is copied into a tmpfs that becomes
              the root; the disk is released; changes are lost at power-off.

Standard library only: this runs inside MixOS's trimmed Python.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mixboot import grubenv, kernels, menu, mounts, sdisk

ON = "on"
OFF = "off"


class VramError(RuntimeError):
    """The choice cannot be kept here; the message says how to choose instead."""


def medium_kind(env: dict[str, str]) -> str:
    """'disk' (an installed system or VISO), 'sdisk' or 'iso' (a live medium)."""
    if env.get("MIXOS_SDISK"):
        return "sdisk"
    if env.get("MIXOS_ROOT"):
        return "disk"
    return "iso"


def meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return out


def _used(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def ram_bytes(kind: str, in_ram: bool) -> int:
    """Bytes the system's file systems hold in RAM now: the copied root image and
    the overlay's writes (live), or the whole root (an installed system in VRAM)."""
    types = mounts.mount_types()
    if kind == "disk":
        return _used("/") if in_ram and types.get("/") == "tmpfs" else 0
    total = 0
    for where in ("/run/mixos/vram", "/run/mixos/rw"):
        if types.get(where) == "tmpfs":
            total += _used(where)
    return total


def _booted_env() -> dict[str, str]:
    env = sdisk.boot_env()
    if not env:
        raise VramError(f"no {sdisk.BOOT_ENV}: this system was not booted by MixOS's "
                        "initramfs (mix vram acts on a booted MixOS)")
    return env


def status(env: dict[str, str] | None = None) -> dict[str, object]:
    env = _booted_env() if env is None else env
    kind = medium_kind(env)
    in_ram = env.get("MIXOS_VRAM") == ON
    mem = meminfo()
    medium = {"disk": env.get("MIXOS_ROOT"), "sdisk": env.get("MIXOS_SDISK"),
              "iso": env.get("MIXOS_MEDIUM")}[kind]
    return {
        "medium": kind,
        "device": medium or None,
        "image": env.get("MIXOS_IMAGE") or None,
        "requested": env.get("MIXOS_VRAM_REQUESTED") or None,
        "in_effect": ON if in_ram else OFF,
        "why": env.get("MIXOS_VRAM_WHY") or None,
        "copied_bytes": int(env.get("MIXOS_VRAM_KB", "0") or 0) * 1024,
        "ram_bytes": ram_bytes(kind, in_ram),
        "mem_total": mem.get("MemTotal"),
        "mem_available": mem.get("MemAvailable"),
        "medium_needed": not in_ram,
        "next_boot": next_boot(env),
    }


def next_boot(env: dict[str, str]) -> str | None:
    """The VRAM mode the normal entry passes at the next boot, where it is kept."""
    kind = medium_kind(env)
    try:
        if kind == "disk":
            with disk_root(env, readonly=True) as root:
                value = kernels.read_env(root).get(menu.VRAM_VAR)
            return value or menu.DISK_VRAM_DEFAULT
        if kind == "sdisk":
            with sdisk.opened(readonly=True) as sd:
                return sd.env().get(menu.VRAM_VAR) or menu.SDISK_VRAM_DEFAULT
    except (VramError, sdisk.SdiskError, grubenv.GrubEnvError, OSError):
        return None  # the medium is gone (unplugged) or unreadable: unknown
    return None  # the ISO: chosen at each boot


@contextlib.contextmanager
def disk_root(env: dict[str, str], *, readonly: bool = False,
              root: Path = Path("/")) -> Iterator[Path]:
    """The installed system's root file system: ROOT when the system runs from it,
    else (VRAM) its device, mounted for the duration."""
    if env.get("MIXOS_VRAM") != ON:
        yield root
        return
    device = env.get("MIXOS_ROOT", "")
    if not device:
        raise VramError("no root device recorded in /run/mixos/boot.env")
    if os.geteuid() != 0:
        raise VramError(f"the system runs in RAM; reaching its disk {device} needs root")
    try:
        with mounts.mounted(device, "ro" if readonly else "rw", prefix="mixos-root-") as where:
            yield where
    except mounts.MountError as e:
        raise VramError(f"the root disk {device}: {e} (was the disk detached?)") from None


def persist(value: str, env: dict[str, str] | None = None, root: Path = Path("/")) -> str:
    """Keep VRAM=VALUE for the next boots' normal entries; returns where it was kept.
    ROOT: the installed system's root when it runs from its disk."""
    env = _booted_env() if env is None else env
    kind = medium_kind(env)
    if kind == "iso":
        raise VramError(
            "this system runs from a read-only ISO: nothing can be kept on it. Choose at "
            "each boot: the menu's 'run from RAM (VRAM)' entry (Esc or Shift on the "
            "keyboard while GRUB starts), 2 in the console menu (a key on the serial "
            f"console while the kernel starts), or VRAM={value} on the kernel command line")
    if kind == "sdisk":
        with sdisk.opened(readonly=False) as sd:
            sd.set_env(**{menu.VRAM_VAR: value})
        return f"the SDISK's boot environment ({env.get('MIXOS_SDISK')})"
    with disk_root(env, root=root) as where:
        kernels.set_env(where, **{menu.VRAM_VAR: value})
    return f"{kernels.env_path(Path('/'))} on {env.get('MIXOS_ROOT')}"
