"""GRUB menus: the installed disk's (the live medium's is built in mixbuild.images.iso,
from the same entries and command line, mixboot.cmdline).

The disk menu boots, by id, the kernel GRUB's environment block names (see
kernels.py for the trial/fallback protocol); every entry loads /boot/<version>/
from the root partition GRUB's prefix points at (layout.GRUB_PREFIX). The
known-good kernel is the first entry, so that a menu whose environment block
cannot be read still boots it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mixboot import cmdline

# As on the live medium: no visible menu unless Esc or Shift is pressed on the
# keyboard while GRUB starts (a visible timeout costs its length on every boot).
MENU_HINT = "Esc or Shift on the keyboard: boot menu (previous kernel, rescue shell)"


@dataclass(frozen=True)
class MenuKernel:
    version: str
    previous: bool = False  # not the installed kernel: the fallback


def _entry(ident: str, title: str, version: str, args: str) -> list[str]:
    # Under BIOS the 16-bit boot protocol (linux16), as on the live medium: the
    # kernel reaches /init ~1.5 s sooner under TCG.
    return [
        f'menuentry "{title}" --id "{ident}" {{',
        '    if [ "$grub_platform" = pc ]; then',
        f"        linux16 /boot/{version}/vmlinuz {args}",
        f"        initrd16 /boot/{version}/initramfs.img",
        "    else",
        f"        linux /boot/{version}/vmlinuz {args}",
        f"        initrd /boot/{version}/initramfs.img",
        "    fi",
        "}",
    ]


def disk_menu(kernels: list[MenuKernel], *, os_version: str, root_uuid: str, hardening: str,
              extra: str = "") -> str:
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
    for k in kernels:
        args = cmdline.kernel_args(f"{cmdline.entry('normal').args} {cmdline_kernel(k.version)}",
                                   hardening=hardening, root=root, extra=extra)
        title = f"{name}, kernel {k.version}" + (" (previous)" if k.previous else "")
        lines += _entry(entry_id(k.version), title, k.version, args)
    current = next((k for k in kernels if not k.previous), None)
    if current is not None:
        rescue = cmdline.entry("rescue")
        args = cmdline.kernel_args(f"{rescue.args} {cmdline_kernel(current.version)}",
                                   hardening=hardening, root=root, extra=extra)
        lines += _entry(f"rescue-{current.version}", f"{name}{rescue.title}", current.version,
                        args)
    return "\n".join(lines) + "\n"


def entry_id(version: str) -> str:
    """A kernel's menu entry id. Never the bare version: GRUB reads a `default`
    that starts with a digit as an entry *number* ("6.1.192" is entry 6)."""
    return f"kernel-{version}"


def cmdline_kernel(version: str) -> str:
    return f"{cmdline.KERNEL_ARG}={version}"
