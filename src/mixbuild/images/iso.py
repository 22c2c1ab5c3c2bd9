"""`make iso`: kernel + initramfs + root squashfs -> artifacts/mixos-<version>.iso.

A hybrid image made by grub-mkrescue: it boots from a CD-ROM or a disk, with
BIOS (SeaBIOS) or UEFI (OVMF), into a GRUB menu shown on both the serial port and
the screen (hidden unless Esc or Shift is pressed on the keyboard, see MENU_TIMEOUT):

    normal   the default: root image under a RAM overlay (VRAM=auto)
    VRAM     VRAM=on: the root image is copied into RAM, the medium released
    rescue   a shell in the initramfs, before anything is mounted

Layout inside the ISO (volume label MIXOS; the initramfs finds it by label):

    /boot/vmlinuz  /boot/initramfs.img  /boot/grub/grub.cfg  /live/root.squashfs
    /mixos-image.json  what the image says about itself (mixboot.image): the
                   SDISK's menu reads it
    /repo/         the signed package repository the image's mix uses offline
                   (artifacts/medium-repo from `make rootfs`; the booted system
                   sees it at /run/mixos/medium/repo)

Kernel arguments: the serial+screen consoles, then the hardening arguments from
configs/kernel/cmdline (one line), then the entry's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mixboot import cmdline, image, menu
from mixbuild.common import ARTIFACTS, PROJECT, BuildError, log, run, source_date_epoch, step
from mixbuild.images import bootcompat

VOLUME_LABEL = "MIXOS"
CMDLINE_FILE = PROJECT / "configs" / "kernel" / "cmdline"
SQUASHFS_PATH = "/live/root.squashfs"
INSTALL_CONFIG_PATH = "/install.yaml"
# Seconds the GRUB menu waits before booting the default entry: none. The menu
# stays hidden unless Esc, F4 or Shift is pressed on the keyboard while GRUB
# starts (keys typed while the firmware starts are buffered), as in Debian's and
# Ubuntu's cloud images. GRUB's shortest visible timeout, 1 s, cost ~1.2 s of a
# boot meant to take a few seconds. The check reads the keyboard only: Debian's
# GRUB stretches a hidden zero timeout to 3 s when an input terminal cannot report
# modifier keys, and the serial terminal cannot. The menu, once open, is drawn
# on the serial port and the screen. On a serial-only VM, send the key through
# the hypervisor (QEMU's monitor: "sendkey esc"), or press a key on the serial
# console while the kernel starts: the initramfs offers the same choices.
MENU_TIMEOUT = 0
MENU_HINT = "Esc or Shift on the keyboard: boot menu (VRAM, rescue shell)"
# The GRUB modules the menu needs (both platforms); everything else is left out
# to keep the ISO small. grub-mkrescue adds each module's dependencies.
GRUB_MODULES = ("normal linux linux16 iso9660 part_msdos part_gpt fat serial terminal search "
                "search_label echo test configfile gzio xzio all_video")
# Only with a GRUB password (--grub-password-hash).
PASSWORD_MODULES = "password_pbkdf2"


def grub_modules(inputs: IsoInputs) -> str:
    return f"{GRUB_MODULES} {PASSWORD_MODULES}" if inputs.grub_password else GRUB_MODULES


@dataclass(frozen=True)
class IsoInputs:
    kernel: Path
    initrd: Path
    squashfs: Path
    version: str
    label: str = VOLUME_LABEL
    extra_cmdline: str = ""
    repo: Path | None = None  # a directory copied to /repo on the medium
    kernel_config: Path | None = None  # the kernel's .config, for bootcompat checks
    # An install.yaml to carry as /install.yaml: the ISO then installs MixOS
    # unattended (mixos.install=/install.yaml on every entry but rescue).
    install_config: Path | None = None
    # A GRUB password (the hash grub-mkpasswd-pbkdf2 prints): editing an entry, the
    # command line and the rescue entry then need it (mixboot.menu.password_lines).
    grub_password: str = ""


def project_version() -> str:
    with (PROJECT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def hardening_cmdline(path: Path | None = None) -> str:
    """The kernel hardening arguments of the source tree (configs/kernel/cmdline)."""
    path = path or CMDLINE_FILE
    if not path.is_file():
        log(f"note: {path} not found; no hardening arguments added")
    return cmdline.read_hardening(path)


def kernel_args(entry_args: str = "", *, label: str = VOLUME_LABEL, extra: str = "") -> str:
    """The kernel command line of a live-medium boot entry (mixboot.cmdline owns the
    order). The VM tests and benchmarks use it, so direct kernel boots match the menu."""
    return cmdline.kernel_args(entry_args, hardening=hardening_cmdline(),
                               root=cmdline.live_root(label), extra=extra)


def entry_args(entry_id: str) -> str:
    """The menu entry ENTRY_ID's own kernel arguments (mixboot.cmdline.ENTRIES)."""
    return cmdline.entry(entry_id).args


def grub_cfg(inputs: IsoInputs) -> str:
    entries = [(e.ident, f"MixOS {inputs.version}{e.title}", e.args) for e in cmdline.ENTRIES]
    lines = [
        f"# MixOS {inputs.version} boot menu, on the serial port and the screen.",
        "serial --unit=0 --speed=115200",
        "terminal_input console",
        "terminal_output serial console",
        f"set timeout={MENU_TIMEOUT}",
        "set timeout_style=hidden",
        f'echo "MixOS {inputs.version}: {MENU_HINT}"',
        *menu.password_lines(inputs.grub_password),
        "set default=normal",
        "",
    ]
    for entry_id, title, args in entries:
        if inputs.install_config is not None and entry_id == "vram":
            continue  # the installer reads its medium (repository, install.yaml): no VRAM
        access, locked = menu.entry_access(entry_id, inputs.grub_password)
        args = f"{args} {locked}".strip()
        extra = inputs.extra_cmdline
        if inputs.install_config is not None and entry_id != "rescue":
            extra = f"{extra} {cmdline.install_arg(INSTALL_CONFIG_PATH)}".strip()
            title += ", unattended install"
        line = kernel_args(args, label=inputs.label, extra=extra)
        # Under BIOS, the 16-bit boot protocol (linux16): the kernel reaches
        # /init ~1.5 s sooner under TCG than when GRUB enters it in 32-bit mode.
        lines += [
            f'menuentry "{title}" --id {entry_id}{access} {{',
            '    if [ "$grub_platform" = pc ]; then',
            f"        linux16 /boot/vmlinuz {line}",
            "        initrd16 /boot/initramfs.img",
            "    else",
            f"        linux /boot/vmlinuz {line}",
            "        initrd /boot/initramfs.img",
            "    fi",
            "}",
        ]
    return "\n".join(lines) + "\n"


def image_info(inputs: IsoInputs) -> image.ImageInfo:
    """What the image says about itself (/mixos-image.json: the SDISK's menu reads it)."""
    return image.ImageInfo(
        version=inputs.version,
        build_date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(source_date_epoch())),
        kernel="/boot/vmlinuz", initrd="/boot/initramfs.img", root_image=SQUASHFS_PATH,
        hardening=hardening_cmdline(), extra=inputs.extra_cmdline,
        install=INSTALL_CONFIG_PATH if inputs.install_config is not None else "")


def reproducible_dates() -> list[str]:
    """xorriso commands that set every date in the image to SOURCE_DATE_EPOCH
    (the volume's creation/modification time, the boot catalog, every file)."""
    sde = source_date_epoch()
    stamp = time.strftime("%Y%m%d%H%M%S00", time.gmtime(sde))
    return ["-volume_date", "uuid", stamp, "-volume_date", "all_file_dates", f"={sde}"]


def fix_efi_volume_serial(image: Path) -> None:
    """grub-mkrescue's EFI boot image is a FAT file system made by mformat with a
    random volume serial number, the one byte range that differs between two
    builds. Overwrite it with a value derived from SOURCE_DATE_EPOCH."""
    report = run(["xorriso", "-indev", image, "-report_el_torito", "plain"],
                 capture=True).stdout
    lbas = [int(line.split()[-1]) for line in report.splitlines()
            if line.startswith("El Torito boot img") and " UEFI " in line]
    if len(lbas) != 1:
        raise BuildError(f"{image}: expected one UEFI El Torito image, found {len(lbas)}")
    with image.open("r+b") as f:
        f.seek(lbas[0] * 2048)
        boot = f.read(512)
        if boot[510:512] != b"\x55\xaa" or boot[0x36:0x39] != b"FAT":
            raise BuildError(f"{image}: the UEFI boot image is not FAT12/16; cannot fix its serial")
        f.seek(lbas[0] * 2048 + 0x27)  # BPB volume ID of FAT12/16
        f.write((source_date_epoch() & 0xFFFFFFFF).to_bytes(4, "little"))


def inputs_key(inputs: IsoInputs, cfg: str) -> str:
    h = hashlib.sha256()
    repo_files = sorted(p for p in inputs.repo.rglob("*") if p.is_file()) if inputs.repo else []
    extra = [inputs.install_config] if inputs.install_config is not None else []
    for path in (inputs.kernel, inputs.initrd, inputs.squashfs, *repo_files, *extra):
        with path.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
        h.update(str(path.name).encode())
    h.update(cfg.encode())
    h.update(image_info(inputs).to_json().encode())
    h.update(Path(__file__).read_bytes())  # this builder's own code
    h.update(json.dumps([grub_modules(inputs), source_date_epoch(), inputs.label]).encode())
    h.update(run(["grub-mkrescue", "--version"], capture=True).stdout.encode())
    return h.hexdigest()


def check_inputs(inputs: IsoInputs) -> None:
    for path, how in ((inputs.kernel, "make kernel"), (inputs.initrd, "make initramfs"),
                      (inputs.squashfs, "make rootfs")):
        if not path.is_file():
            raise BuildError(f"{path} is missing; run '{how}' first")


def check_kernel(inputs: IsoInputs) -> None:
    """Refuse an image whose kernel cannot boot its initramfs and root image."""
    if inputs.kernel_config is None:
        return
    if not inputs.kernel_config.is_file():
        log(f"note: {inputs.kernel_config} not found; kernel compatibility not checked")
        return
    try:
        missing = bootcompat.problems(bootcompat.read_config(inputs.kernel_config),
                                      initrd=inputs.initrd, squashfs=inputs.squashfs)
    except ValueError as e:
        raise BuildError(str(e)) from e
    if missing:
        raise BuildError(
            f"the kernel {inputs.kernel} cannot boot this image; its config "
            f"{inputs.kernel_config} lacks:\n  " + "\n  ".join(missing)
            + "\nenable them in configs/kernel/ and run 'make kernel' (or change the "
            "root image's compression in 'make rootfs')")


def build(inputs: IsoInputs, output: Path) -> Path:
    check_inputs(inputs)
    check_kernel(inputs)
    cfg = grub_cfg(inputs)
    key = inputs_key(inputs, cfg)
    stamp = output.with_name(output.name + ".inputs")
    if output.is_file() and stamp.is_file() and stamp.read_text() == key:
        log(f"{output.name} is up to date")
        return output
    with step(f"Building the ISO {output}"), \
            tempfile.TemporaryDirectory(prefix="mixos-iso-") as tmp:
        tree = Path(tmp) / "tree"
        (tree / "boot" / "grub").mkdir(parents=True)
        (tree / "live").mkdir()
        shutil.copyfile(inputs.kernel, tree / "boot" / "vmlinuz")
        shutil.copyfile(inputs.initrd, tree / "boot" / "initramfs.img")
        shutil.copyfile(inputs.squashfs, tree / SQUASHFS_PATH.lstrip("/"))
        (tree / "boot" / "grub" / "grub.cfg").write_text(cfg)
        if inputs.repo is not None:
            shutil.copytree(inputs.repo, tree / "repo")
        (tree / image.INFO_PATH.lstrip("/")).write_text(image_info(inputs).to_json())
        if inputs.install_config is not None:
            shutil.copyfile(inputs.install_config, tree / INSTALL_CONFIG_PATH.lstrip("/"))
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        run(["grub-mkrescue", "-o", partial,
             f"--install-modules={grub_modules(inputs)}", "--fonts=", "--locales=", "--themes=",
             # Uncompressed modules: +0.5 MB, but GRUB starts ~0.2 s sooner under
             # TCG (no xz decoding of every module it loads).
             "--compress=no", "--product-name=MixOS", f"--product-version={inputs.version}",
             tree, "--", "-volid", inputs.label, *reproducible_dates()], capture=True)
        fix_efi_volume_serial(partial)
        partial.replace(output)
        stamp.write_text(key)
        log(f"{output.name}: {output.stat().st_size / 2**20:.1f} MiB")
    return output


def check_install_config(path: Path) -> None:
    """Refuse to build an unattended ISO around an invalid install.yaml."""
    from mixinstall import config as configmod

    try:
        configmod.load(str(path))
    except configmod.ConfigError as e:
        raise BuildError(f"--install-config: {e}") from None


def install_repo() -> Path:
    """The unattended ISO's repository: the build's signed repository without the
    collection (artifacts/install-repo). An installation needs every package file, the
    kernel's too; the live ISO's repository carries only what its root image lacks,
    without the kernel, to stay within its size budget."""
    from mixbuild.images.rootfs import collection, medium_repo

    out = ARTIFACTS / "install-repo"
    medium_repo(None, out, exclude=collection())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild iso", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", type=Path, default=ARTIFACTS / "kernel" / "bzImage")
    parser.add_argument("--initrd", type=Path, default=ARTIFACTS / "initramfs.img")
    parser.add_argument("--squashfs", type=Path, default=ARTIFACTS / "root.squashfs")
    parser.add_argument("--repo", type=Path, default=ARTIFACTS / "medium-repo",
                        help="package repository to carry as /repo (skipped if missing)")
    parser.add_argument("--no-repo", action="store_true", help="carry no /repo")
    parser.add_argument("--kernel-config", type=Path,
                        help="the kernel's .config to check the image against "
                             "(default: 'config' beside --kernel)")
    parser.add_argument("--no-kernel-check", action="store_true",
                        help="don't check that the kernel can boot the image")
    parser.add_argument("--label", default=VOLUME_LABEL, help="ISO volume label")
    parser.add_argument("--cmdline", default="", help="extra kernel arguments for every entry")
    parser.add_argument("--install-config", type=Path, metavar="INSTALL_YAML",
                        help="make an unattended installer: carry this install.yaml and "
                             "start mixos-install with it at boot (validated now); the "
                             "medium's repository then holds every package but the collection, the kernel too")
    parser.add_argument("--grub-password-hash", default="", metavar="HASH",
                        help="protect editing, GRUB's command line and the rescue entry "
                             "with this password hash (what grub-mkpasswd-pbkdf2 prints: "
                             "grub.pbkdf2.sha512.ROUNDS.SALT.HASH); normal boots stay open")
    parser.add_argument("-o", "--output", type=Path,
                        help="default: artifacts/mixos-<version>.iso "
                             "(-autoinstall.iso with --install-config)")
    args = parser.parse_args(argv)
    version = project_version()
    try:
        menu.check_password_hash(args.grub_password_hash)
    except ValueError as e:
        print(f"mixbuild iso: --grub-password-hash: {e}", file=sys.stderr)
        return 2
    if args.install_config is not None:
        try:
            check_install_config(args.install_config)
        except BuildError as e:
            print(f"mixbuild iso: {e}", file=sys.stderr)
            return 1
        if args.repo == ARTIFACTS / "medium-repo":
            args.repo = install_repo()
    repo = None if args.no_repo else args.repo
    if repo is not None and not repo.is_dir():
        log(f"note: {repo} not found; the ISO carries no package repository")
        repo = None
    inputs = IsoInputs(kernel=args.kernel, initrd=args.initrd, squashfs=args.squashfs,
                       version=version, label=args.label, extra_cmdline=args.cmdline,
                       repo=repo, install_config=args.install_config,
                       grub_password=args.grub_password_hash,
                       kernel_config=None if args.no_kernel_check else
                       args.kernel_config or args.kernel.with_name("config"))
    output = args.output or ARTIFACTS / (f"mixos-{version}-autoinstall.iso"
                                          if args.install_config else f"mixos-{version}.iso")
    try:
        build(inputs, output)
    except BuildError as e:
        print(f"mixbuild iso: {e}", file=sys.stderr)
        return 1
    return 0
