"""GRUB menus: the installed disk's and the SDISK's (the live medium's is built in
mixbuild.images.iso, from the same entries and command line, mixboot.cmdline).

The disk menu boots, by id, the kernel GRUB's environment block names (see
kernels.py for the trial/fallback protocol); every entry loads /boot/<version>/
from the root partition GRUB's prefix points at (layout.GRUB_PREFIX). The
known-good kernel is the first entry, so that a menu whose environment block
cannot be read still boots it.

The SDISK menu lists each image it carries (its name, version and build date
from the image's own mixos-image.json) with a normal, a VRAM and a rescue
entry; GRUB loop-mounts the chosen ISO file and boots its kernel with
mixos.image=/images/NAME.iso, so the initramfs finds the same file.

Both read two variables from GRUB's environment block (grubenv, next to the
menu): mixos_vram (the VRAM mode of the normal entries, set by `mix vram
enable|disable`) and, on an SDISK, mixos_default (the image booted by default,
set by `mix sdisk default`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mixboot import cmdline, layout
from mixboot.image import ImageInfo

# As on the live medium: no visible menu unless Esc or Shift is pressed on the
# keyboard while GRUB starts (a visible timeout costs its length on every boot).
MENU_HINT = "Esc or Shift on the keyboard: boot menu (previous kernel, rescue shell)"
SDISK_HINT = "Esc or Shift on the keyboard: boot menu (every image, VRAM, rescue shell)"
# GRUB environment variables (grubenv) the menus read.
VRAM_VAR = "mixos_vram"
DEFAULT_VAR = "mixos_default"
# The VRAM mode of normal entries when grubenv sets none: an installed system
# runs from its disk; an SDISK image decides as the live ISO does (auto).
DISK_VRAM_DEFAULT = "off"
SDISK_VRAM_DEFAULT = "auto"
# A GRUB password is given as the hash grub-mkpasswd-pbkdf2 prints, never as the
# password itself. The menu names one superuser; install.schema.json repeats
# the pattern (a unit test keeps them equal).
GRUB_PASSWORD_PATTERN = r"^grub\.pbkdf2\.sha512\.[1-9][0-9]*\.[0-9A-F]+\.[0-9A-F]+$"
GRUB_SUPERUSER = "root"


def check_password_hash(password_hash: str) -> str:
    if password_hash and not re.fullmatch(GRUB_PASSWORD_PATTERN, password_hash):
        raise ValueError("a GRUB password must be given as the hash grub-mkpasswd-pbkdf2 prints "
                         f"(grub.pbkdf2.sha512.ROUNDS.SALT.HASH), got {password_hash[:40]!r}")
    return password_hash


def password_lines(password_hash: str) -> list[str]:
    """With a password hash: only the superuser may edit an entry, open GRUB's
    command line or boot an entry not marked --unrestricted (the rescue entry)."""
    if not check_password_hash(password_hash):
        return []
    return [f'set superusers="{GRUB_SUPERUSER}"',
            f"password_pbkdf2 {GRUB_SUPERUSER} {password_hash}"]


def entry_access(ident: str, password_hash: str) -> tuple[str, str]:
    """(menuentry option, kernel argument) of an entry: with a password, every entry
    but rescue boots for anyone (--unrestricted), with the initramfs's shells off."""
    if not password_hash or ident == "rescue":
        return "", ""
    return " --unrestricted", cmdline.LOCKED_ARG


@dataclass(frozen=True)
class MenuKernel:
    version: str
    previous: bool = False  # not the installed kernel: the fallback


def _entry(ident: str, title: str, version: str, args: str, access: str = "") -> list[str]:
    return _boot_entry(ident, title, f"/boot/{version}/vmlinuz",
                       f"/boot/{version}/initramfs.img", args, access=access)


def _boot_entry(ident: str, title: str, kernel: str, initrd: str, args: str,
                setup: tuple[str, ...] = (), access: str = "") -> list[str]:
    # Under BIOS the 16-bit boot protocol (linux16), as on the live medium: the
    # kernel reaches /init ~1.5 s sooner under TCG.
    return [
        f'menuentry "{title}" --id "{ident}"{access} {{',
        *(f"    {line}" for line in setup),
        '    if [ "$grub_platform" = pc ]; then',
        f"        linux16 {kernel} {args}",
        f"        initrd16 {initrd}",
        "    else",
        f"        linux {kernel} {args}",
        f"        initrd {initrd}",
        "    fi",
        "}",
    ]


def _vram(entry_args: str) -> str:
    """A normal entry's arguments with the VRAM mode grubenv chose."""
    return f"{entry_args} VRAM=${{{VRAM_VAR}}}"


def disk_menu(kernels: list[MenuKernel], *, os_version: str, root_uuid: str, hardening: str,
              extra: str = "", password_hash: str = "") -> str:
    name = f"MixOS {os_version}".strip()
    lines = [
        f"# {name} boot menu, written by mixos-boot (mixboot/kernels.py): do not edit;",
        "# add kernel arguments in /etc/mixos/boot.json (kernel_args) and run 'mixos-boot update'.",
        "serial --unit=0 --speed=115200",
        "terminal_input console",
        "terminal_output serial console",
        "set timeout=0",
        "set timeout_style=hidden",
        f'echo "{name}: {MENU_HINT}"',
        *password_lines(password_hash),
        f"set {VRAM_VAR}={DISK_VRAM_DEFAULT}",
        "load_env",
        "if [ -n \"${mixos_trial}\" ]; then",
        "    # A new kernel, booted once: cleared before it runs, so that a kernel",
        "    # that never reaches userspace is not booted again.",
        "    set default=\"kernel-${mixos_trial}\"",
        "    set fallback=\"kernel-${mixos_good}\"",
        "    set mixos_trial=",
        "    save_env mixos_trial",
        "elif [ -n \"${mixos_good}\" ]; then",
        "    set default=\"kernel-${mixos_good}\"",
        "fi",
        "",
    ]
    root = cmdline.disk_root(root_uuid)
    access, locked = entry_access("normal", password_hash)
    for k in kernels:
        args = cmdline.kernel_args(
            f"{_vram(cmdline.entry('normal').args)} {cmdline_kernel(k.version)} {locked}",
            hardening=hardening, root=root, extra=extra)
        title = f"{name}, kernel {k.version}" + (" (previous)" if k.previous else "")
        lines += _entry(entry_id(k.version), title, k.version, args, access)
    current = next((k for k in kernels if not k.previous), None)
    if current is not None:
        for e in (cmdline.entry("vram"), cmdline.entry("rescue")):
            access, locked = entry_access(e.ident, password_hash)
            args = cmdline.kernel_args(f"{e.args} {cmdline_kernel(current.version)} {locked}",
                                       hardening=hardening, root=root, extra=extra)
            lines += _entry(f"{e.ident}-{current.version}", f"{name}{e.title}",
                            current.version, args, access)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MenuImage:
    """An image on an SDISK: its file name under /images and what it says about itself."""

    file: str
    info: ImageInfo


def image_entry_id(file: str, entry: str = "normal") -> str:
    """An SDISK entry id: never starting with a digit (see entry_id)."""
    return f"image-{file}" if entry == "normal" else f"image-{file}-{entry}"


def sdisk_menu(images: list[MenuImage], *, default: str, password_hash: str = "") -> str:
    """The SDISK's grub.cfg: every image with its entries; DEFAULT (a file name)
    is booted unless grubenv's mixos_default names another. With PASSWORD_HASH,
    as on the other menus: editing, GRUB's command line and the rescue entries
    need the superuser; the other entries boot for anyone, locked."""
    lines = [
        "# MixOS SDISK boot menu, written by mixboot/sdisk.py (mix sdisk): do not edit;",
        "# 'mix sdisk add|remove|default' rewrite it from the images' mixos-image.json.",
        "serial --unit=0 --speed=115200",
        "terminal_input console",
        "terminal_output serial console",
        "set timeout=0",
        "set timeout_style=hidden",
        f'echo "MixOS SDISK ({len(images)} images): {SDISK_HINT}"',
        f"set {VRAM_VAR}={SDISK_VRAM_DEFAULT}",
        f'set {DEFAULT_VAR}="{default}"',
        "load_env",
        f'set default="image-${{{DEFAULT_VAR}}}"',
        *password_lines(password_hash),
        "",
    ]
    for img in images:
        info = img.info
        path = f"/{layout.SDISK_IMAGES}/{img.file}"
        setup = (f"loopback loop {path}",)
        for e in cmdline.ENTRIES:
            if info.install and e.ident == "vram":
                continue  # an installer reads its medium (repository, install.yaml)
            own = _vram(e.args) if e.ident == "normal" else e.args
            access, locked = entry_access(e.ident, password_hash)
            own = f"{own} {locked}".strip()
            extra = info.extra
            if info.install and e.ident != "rescue":
                extra = f"{extra} {cmdline.install_arg(info.install)}"
            args = cmdline.kernel_args(own, hardening=info.hardening,
                                       root=cmdline.sdisk_root(path), extra=extra)
            lines += _boot_entry(image_entry_id(img.file, e.ident),
                                 f"{info.title}{e.title} [{img.file}]",
                                 f"(loop){info.kernel}", f"(loop){info.initrd}", args, setup,
                                 access=access)
    return "\n".join(lines) + "\n"


def entry_id(version: str) -> str:
    """A kernel's menu entry id. Never the bare version: GRUB reads a `default`
    that starts with a digit as an entry *number* ("6.1.192" is entry 6)."""
    return f"kernel-{version}"


def cmdline_kernel(version: str) -> str:
    return f"{cmdline.KERNEL_ARG}={version}"
