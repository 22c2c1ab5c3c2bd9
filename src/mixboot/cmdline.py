"""The kernel command line of every MixOS boot entry: one owner.

Every image type (the live ISO, an installed disk, the VISO) and every test
builds its kernel arguments here, in one order:

    consoles  hardening arguments  root  extra  the entry's own

- consoles: the serial port and the screen (SERIAL_CONSOLE);
- hardening: one line of arguments (configs/kernel/cmdline in the source tree,
  /usr/lib/mixos/kernel-cmdline on an installed system, shipped by mixos-boot);
- root: how the initramfs finds the root file system: the live medium by its
  file system label (mixos.root_label=), an installed system by its root file
  system's UUID (mixos.root=UUID=...), an image on an SDISK by its path on the
  SDISK's data partition (mixos.image=/images/NAME.iso);
- extra: what the image's builder or install.yaml adds (kernel_args:);
- the entry's own: one of ENTRIES (normal, VRAM, rescue).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The serial console the GRUB entries and the tests use; the last console= is
# /dev/console, where init and the rc scripts write.
SERIAL_CONSOLE = "console=tty0 console=ttyS0,115200"
# Where an installed system keeps the hardening arguments (package mixos-boot).
INSTALLED_HARDENING_FILE = "/usr/lib/mixos/kernel-cmdline"
# On an installed system: which kernel (its directory under /boot) an entry boots,
# so that userspace can tell which one it runs on (mixboot.kernels).
KERNEL_ARG = "mixos.kernel"
# On the entries anyone may boot when the menu has a GRUB password: the
# initramfs then gives no shell on the console (its key menu offers no rescue,
# a failed boot stops without one), so the password guards every way to a shell
# before login. docs/security.md, "Console and boot loader".
LOCKED_ARG = "mixos.locked"


@dataclass(frozen=True)
class Entry:
    ident: str  # GRUB menu entry id
    title: str  # what follows "MixOS <version>" in the menu
    args: str  # the entry's own kernel arguments


# "quiet" keeps the kernel's messages off the consoles (they stay in dmesg and
# syslog): printing them on an emulated serial port costs ~0.2 s under TCG. The
# rescue entry shows them.
ENTRIES = (
    Entry("normal", "", "quiet"),
    Entry("vram", ", run from RAM (VRAM)", "quiet VRAM=on"),
    Entry("rescue", ", rescue shell (initramfs)", "rescue"),
)


def entry(ident: str) -> Entry:
    for e in ENTRIES:
        if e.ident == ident:
            return e
    raise KeyError(f"no boot entry {ident!r}; entries: {', '.join(e.ident for e in ENTRIES)}")


def read_hardening(path: Path | str) -> str:
    """The first non-comment line of PATH, whitespace collapsed; '' if PATH is missing."""
    p = Path(path)
    if not p.is_file():
        return ""
    for line in p.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return " ".join(line.split())
    return ""


def live_root(label: str) -> str:
    """Root argument of the live medium: the initramfs finds it by file system label."""
    return f"mixos.root_label={label}"


def disk_root(fs_uuid: str) -> str:
    """Root argument of an installed system: its root file system's UUID."""
    return f"mixos.root=UUID={fs_uuid}"


def install_arg(path: str) -> str:
    """The argument that starts the unattended installer with the install.yaml at
    PATH (on the medium, or a URL); never on a rescue entry."""
    return f"mixos.install={path}"


def sdisk_root(image_path: str) -> str:
    """Root argument of an image on an SDISK: the initramfs finds the SDISK's data
    partition by its label (layout.SDISK_LABEL) and loop-mounts PATH from it."""
    return f"mixos.image={image_path}"


def kernel_args(entry_args: str = "", *, hardening: str, root: str, extra: str = "") -> str:
    """The whole command line, in the order of the module docstring."""
    parts = [SERIAL_CONSOLE, hardening, root, extra, entry_args]
    return " ".join(" ".join(p.split()) for p in parts if p.strip())
