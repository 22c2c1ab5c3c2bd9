"""`make bootloader`: the prebuilt GRUB images an installed MixOS disk (and an
SDISK, mixboot.sdisk) boots from.

    artifacts/grub/boot.img     the BIOS master boot record code (Debian's, as is)
    artifacts/grub/core.img     GRUB for BIOS (SeaBIOS): goes into GPT partition 1
    artifacts/grub/BOOTX64.EFI  GRUB for UEFI (OVMF): goes onto the ESP

The installer (`mixboot.bootloader.install`, which runs inside MixOS, where there
are no GRUB tools) only copies these onto a disk and patches a few sector
numbers, so everything GRUB needs from the disk is decided here: the prefix
layout.GRUB_PREFIX, "(,gpt3)/boot/grub", names partition 3 of whichever disk the
firmware loaded GRUB from, and every module the disk's menu uses is built into
the images, so the disk carries no module directory (and none can go stale
after a GRUB upgrade on the build host). The kit's file names, and the checks
the installer makes of it (core.img at most 888 sectors, the most GRUB's BIOS
boot code loads), belong to mixboot.bootloader; a build it would refuse fails.

Both images are reproducible: grub-mkimage embeds no date or random value (two
builds under different SOURCE_DATE_EPOCHs compared byte for byte; the PE
header's time stamp of BOOTX64.EFI is a constant, 1420070400, set by GRUB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from mixboot import bootloader as installer
from mixboot import layout
from mixbuild.common import ARTIFACTS, BuildError, log, run, step

GRUB_LIB = Path("/usr/lib/grub")
BOOT_IMG = GRUB_LIB / "i386-pc" / "boot.img"
OUTPUT_DIR = ARTIFACTS / "grub"

# The modules the disk's menu uses, on both platforms (grub-mkimage adds their
# dependencies). gzio: the kernel and initramfs may be gzip files.
MENU_MODULES = ("normal", "configfile", "linux", "search", "search_fs_uuid", "search_label",
                "echo", "test", "loadenv", "serial", "terminal", "gzio", "sleep",
                "reboot", "halt", "ls", "cat",
                # A GRUB password (install.yaml security.grub_password).
                "password_pbkdf2",
                # An SDISK (mixboot.sdisk): a FAT data partition holding ISO files.
                "fat", "loopback", "iso9660")
# What each platform needs to find the root partition, plus its own loaders.
# BIOS: the firmware's disks (biosdisk) and the 16-bit Linux boot protocol
# (linux16, ~1.5 s sooner to /init under TCG, see mixbuild.images.iso). No video
# module: linux16 leaves the screen in text mode, which is what the kernel wants.
BIOS_MODULES = ("biosdisk", "part_gpt", "ext2", "linux16", *MENU_MODULES)
# UEFI: the firmware's disks come with the EFI kernel (fat, among MENU_MODULES, reads
# the ESP); efi_gop hands the kernel a framebuffer for its screen console.
EFI_MODULES = ("part_gpt", "ext2", "efi_gop", *MENU_MODULES)


def grub_version() -> str:
    return run(["grub-mkimage", "--version"], capture=True).stdout.strip()


def inputs_key() -> str:
    """Everything the kit is made from: GRUB's version (which fixes its module
    files), boot.img, the module lists, the prefix, and this file."""
    h = hashlib.sha256()
    h.update(grub_version().encode())
    h.update(BOOT_IMG.read_bytes())
    h.update(json.dumps([BIOS_MODULES, EFI_MODULES, layout.GRUB_PREFIX]).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def check_tools() -> None:
    for path, package in ((BOOT_IMG, "grub-pc-bin"),
                          (GRUB_LIB / "x86_64-efi" / "kernel.img", "grub-efi-amd64-bin")):
        if not path.is_file():
            raise BuildError(f"{path} is missing; install Debian's '{package}' ('make deps')")


def mkimage(target: str, modules: tuple[str, ...], output: Path) -> None:
    run(["grub-mkimage", "-O", target, "-p", layout.GRUB_PREFIX, "-o", output,
         "-d", GRUB_LIB / target, *modules], capture=True)


def build(output: Path = OUTPUT_DIR) -> Path:
    """OUTPUT (a directory) holding the kit, rebuilt only when its inputs changed."""
    check_tools()
    key = inputs_key()
    stamp = output.with_name(output.name + ".inputs")
    if all((output / name).is_file() for name in installer.KIT_FILES) \
            and stamp.is_file() and stamp.read_text() == key:
        log(f"{output.name}/ is up to date")
        return output
    with step(f"Building the GRUB images in {output}"):
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
        partial.chmod(0o755)
        try:
            shutil.copyfile(BOOT_IMG, partial / installer.KIT_BOOT_IMG)
            mkimage("i386-pc", BIOS_MODULES, partial / installer.KIT_CORE_IMG)
            mkimage("x86_64-efi", EFI_MODULES, partial / installer.KIT_EFI)
            try:  # what the installer would refuse (core.img too big for BIOS), refused now
                installer.Kit.load(partial)
            except installer.BootloaderError as e:
                raise BuildError(f"{e}; drop modules from BIOS_MODULES") from e
            stamp.unlink(missing_ok=True)
            shutil.rmtree(output, ignore_errors=True)
            partial.rename(output)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        stamp.write_text(key)
        for name in installer.KIT_FILES:
            log(f"{name}: {(output / name).stat().st_size} bytes")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild bootloader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT_DIR,
                        help="directory for boot.img, core.img, BOOTX64.EFI "
                             "(default: artifacts/grub)")
    args = parser.parse_args(argv)
    try:
        build(args.output)
    except BuildError as e:
        print(f"mixbuild bootloader: {e}", file=sys.stderr)
        return 1
    return 0
