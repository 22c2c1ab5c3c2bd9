"""`make sdisk`: the SDISK, one disk carrying several MixOS images and a GRUB menu
to pick one (artifacts/mixos-<version>.sdisk; raw, or qcow2 with --format qcow2).

By default it carries this build's live ISO and its unattended installer; `make
sdisk IMAGES="a.iso b.iso"` (or --images) carries others, the first one being the
default. The layout is mixboot.layout's (BIOS boot, ESP, ext4 data partition
labelled MIXOS-SDISK); the GRUB images are the installed disks' (`make
bootloader`); the images are added and the menu written by mixboot.sdisk, the
same code `mix sdisk add` runs on a booted SDISK. Boot it with

    qemu-system-x86_64 -m 256M -nographic \\
        -drive file=mixos-<version>.sdisk,format=raw,if=virtio

(SeaBIOS or OVMF); Esc or Shift on the keyboard while GRUB starts opens its menu.
Needs root (a loop device), as `make viso` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from mixboot import bootloader, layout
from mixboot.image import ImageError, read_iso
from mixbuild.common import ARTIFACTS, PROJECT, BuildError, log, run, step
from mixbuild.images.bootloader import OUTPUT_DIR as KIT_DIR
from mixbuild.images.iso import project_version

FORMATS = ("raw", "qcow2")
# Room left on the data partition beyond the images: one more image as large as
# the largest (a new release added with `mix sdisk add`), plus the menu's files
# and ext4's own (its journal, inode tables: ~8% at these sizes).
SPARE_MIB = 16
FS_OVERHEAD = 1.08
MIN_DATA_MIB = 64


def default_images(version: str) -> list[Path]:
    return [ARTIFACTS / f"mixos-{version}.iso", ARTIFACTS / f"mixos-{version}-autoinstall.iso"]


def data_mib_for(images: list[Path]) -> int:
    sizes = [p.stat().st_size for p in images]
    need = int((sum(sizes) + max(sizes)) * FS_OVERHEAD) + SPARE_MIB * 2**20
    return max(MIN_DATA_MIB, -(-need // 2**20))


def inputs_key(images: list[Path], fmt: str, data_mib: int, password_hash: str = "") -> str:
    h = hashlib.sha256()
    for p in images:
        h.update(p.name.encode())
        with p.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    for p in sorted(KIT_DIR.glob("*")) + sorted((PROJECT / "src" / "mixboot").glob("*.py")) \
            + [Path(__file__)]:
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    h.update(json.dumps([fmt, data_mib, password_hash]).encode())
    return h.hexdigest()


def sfdisk_script(data_mib: int) -> str:
    mib = 2048  # sectors
    start = layout.ALIGN_MIB * mib
    esp = start + layout.BIOS_BOOT_MIB * mib
    data = esp + layout.ESP_MIB * mib
    return "\n".join([
        "label: gpt", "unit: sectors", "",
        (f"start={start}, size={layout.BIOS_BOOT_MIB * mib}, "
         f"type={layout.TYPE_GUIDS[layout.BIOS_BOOT]}, "
         f"name=\"{layout.PART_LABELS[layout.BIOS_BOOT]}\""),
        (f"start={esp}, size={layout.ESP_MIB * mib}, type={layout.TYPE_GUIDS[layout.ESP]}, "
         f"name=\"{layout.PART_LABELS[layout.ESP]}\""),
        f"start={data}, size={data_mib * mib}, type={layout.TYPE_GUIDS[layout.DATA]}, name=\"mixos-sdisk\"",
    ]) + "\n"


def fill(raw: Path, images: list[Path], tmp: Path, password_hash: str = "") -> None:
    """Partition RAW, make its file systems and boot loader, add IMAGES."""
    from mixboot.sdisk import Sdisk, SdiskError
    from mixinstall.disk import wait_for_partitions
    from mixinstall.install import fill_esp
    from mixinstall.steps import InstallError, Progress

    data_mib = (raw.stat().st_size // 2**20) - layout.ALIGN_MIB - layout.BIOS_BOOT_MIB \
        - layout.ESP_MIB - 1
    script = sfdisk_script(data_mib)
    run(["sfdisk", "--quiet", raw], input=script, capture=True, timeout=60)
    loop = run(["losetup", "--find", "--show", "--partscan", raw], capture=True).stdout.strip()
    try:
        esp_dev = Path(layout.partition_device(loop, layout.ESP))
        data_dev = Path(layout.partition_device(loop, layout.SDISK_DATA))
        # The installer's own steps: partx where losetup --partscan made no devices,
        # and the ESP filled with mtools (build hosts need no FAT in their kernel).
        progress = Progress(quiet=True)
        try:
            wait_for_partitions(progress, loop, [layout.ESP, layout.SDISK_DATA])
        except InstallError as e:
            raise BuildError(str(e)) from None
        run(["mkfs.vfat", "-n", layout.FS_LABELS[layout.ESP], esp_dev], capture=True)
        # -m 0: no blocks reserved for root (nothing but images and the menu live here).
        run(["mkfs.ext4", "-q", "-F", "-m", "0",
             "-E", "lazy_itable_init=0,lazy_journal_init=0", "-L", layout.SDISK_LABEL, data_dev], capture=True)
        esp_tree = tmp / "esp"
        esp_tree.mkdir()
        try:
            bootloader.install(loop, kit=KIT_DIR, esp_mount=esp_tree)
        except bootloader.BootloaderError as e:
            raise BuildError(f"the SDISK's boot loader: {e}") from None
        try:
            fill_esp(progress, str(esp_dev), esp_tree)
        except InstallError as e:
            raise BuildError(f"the SDISK's EFI system partition: {e}") from None
        mnt = tmp / "data"
        mnt.mkdir()
        run(["mount", "-t", "ext4", "-o", "rw,nosuid,nodev,noexec", data_dev, mnt])
        try:
            (mnt / layout.SDISK_IMAGES).mkdir()
            sd = Sdisk(mnt)
            for n, image in enumerate(images):
                try:
                    img = sd.add(image, make_default=(n == 0))
                except SdiskError as e:
                    raise BuildError(str(e)) from None
                assert img.info is not None
                log(f"{img.file}: {img.info.title}, {img.size / 2**20:.1f} MiB")
            if password_hash:
                sd.set_password_hash(password_hash)
                log("GRUB password set: editing and rescue entries need the superuser")
        finally:
            os.sync()
            run(["umount", mnt])
    finally:
        run(["losetup", "--detach", loop])


def build(images: list[Path], output: Path, fmt: str = "raw", password_hash: str = "") -> Path:
    if not images:
        raise BuildError("no images to put on the SDISK")
    for image in images:
        if not image.is_file():
            raise BuildError(f"{image} does not exist; run 'make iso iso-autoinstall' first "
                             "(or name other images with IMAGES=...)")
        try:
            read_iso(image)
        except ImageError as e:
            raise BuildError(str(e)) from None
    names = [p.name for p in images]
    if len(set(names)) != len(names):
        raise BuildError(f"two images share a file name: {', '.join(names)}")
    if not all((KIT_DIR / name).is_file() for name in bootloader.KIT_FILES):
        raise BuildError(f"{KIT_DIR} lacks the GRUB images; run 'make bootloader' first")
    if os.geteuid() != 0:
        raise BuildError("building an SDISK needs root (a loop device), as 'make viso' does")
    data_mib = data_mib_for(images)
    key = inputs_key(images, fmt, data_mib, password_hash)
    stamp = output.with_name(output.name + ".inputs")
    if output.is_file() and stamp.is_file() and stamp.read_text() == key:
        log(f"{output.name} is up to date")
        return output
    disk_mib = layout.ALIGN_MIB + layout.BIOS_BOOT_MIB + layout.ESP_MIB + data_mib + 1
    output.parent.mkdir(parents=True, exist_ok=True)
    with step(f"Building the SDISK {output} ({len(images)} images, {disk_mib} MiB, {fmt})"), \
            tempfile.TemporaryDirectory(prefix="mixos-sdisk-", dir=output.parent) as tmp_s:
        tmp = Path(tmp_s)
        raw = tmp / "sdisk.raw"
        with raw.open("wb") as f:
            f.truncate(disk_mib * 2**20)
        fill(raw, images, tmp, password_hash)
        partial = output.with_name(output.name + ".partial")
        if fmt == "qcow2":
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, partial], timeout=900)
        else:
            shutil.move(raw, partial)
        partial.replace(output)
    stamp.write_text(key)
    log(f"{output.name}: {disk_mib} MiB, {output.stat().st_blocks * 512 / 2**20:.1f} MiB "
        "allocated")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild sdisk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, nargs="+",
                        help="MixOS ISOs to carry, the first the default (default: this "
                             "build's ISO and unattended-install ISO)")
    parser.add_argument("--format", choices=FORMATS, default="raw")
    parser.add_argument("--grub-password-hash", default="", metavar="HASH",
                        help="a GRUB superuser password (grub-mkpasswd-pbkdf2's hash): editing "
                             "and the rescue entries need it (docs/security.md)")
    parser.add_argument("-o", "--output", type=Path,
                        help="default: artifacts/mixos-<version>.sdisk")
    args = parser.parse_args(argv)
    version = project_version()
    output = args.output or ARTIFACTS / f"mixos-{version}.sdisk"
    try:
        build(args.images or default_images(version), output, args.format,
              args.grub_password_hash)
    except BuildError as e:
        print(f"mixbuild sdisk: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
