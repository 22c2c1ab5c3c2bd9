"""Helpers for the image tests: real MixOS-shaped disk images, made without root.

A raw GPT disk with the partitions mixboot.layout fixes (1 BIOS boot, 2 ESP, 3
root), the root an ext4 file system made by `mkfs.ext4 -d` from a directory,
the ESP a FAT file system made by mkfs.vfat and filled by mtools; GRUB's own
boot.img and diskboot.img (from the build host's grub-pc-bin) as the BIOS boot
code. `qemu-img convert` makes the qcow2 (compressed with -c) from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mixboot import layout

GRUB_I386 = Path("/usr/lib/grub/i386-pc")
MIB = 1 << 20
SECTORS_PER_MIB = MIB // 512


def tools_missing() -> str:
    """The tools these helpers need that the host lacks ("" when all are there)."""
    need = ("sfdisk", "mkfs.ext4", "e2fsck", "debugfs", "mkfs.vfat", "mmd", "mcopy", "mdir",
            "mtype", "qemu-img", "xorriso", "grub-mkrescue", "busybox")
    missing = [t for t in need if shutil.which(t) is None]
    missing += [str(GRUB_I386 / f) for f in ("boot.img", "diskboot.img")
                if not (GRUB_I386 / f).is_file()]
    return " ".join(missing)


def run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def root_tree(base: Path, version: str, kernels: tuple[str, ...],
              os_id: str = "mixos") -> Path:
    """A root directory as MixOS's base-files and mixos-boot lay it out:
    /etc/os-release a symlink to ../usr/lib/os-release, /boot/<kernel>/vmlinuz."""
    root = base / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "usr/lib/os-release").write_text(
        f'NAME="MixOS"\nID={os_id}\nVERSION_ID={version}\nPRETTY_NAME="MixOS {version}"\n')
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    (root / "boot/grub").mkdir(parents=True)
    (root / "boot/grub/grub.cfg").write_text("# menu\n")
    for k in kernels:
        (root / "boot" / k).mkdir()
        # Bigger than one block and than the 60 bytes an inode holds inline.
        (root / "boot" / k / "vmlinuz").write_bytes(os.urandom(300_000))
        (root / "boot" / k / "initramfs.img").write_bytes(b"\0" * 5000)
    # Many entries, so that /etc spans several directory blocks (a hashed directory).
    for n in range(300):
        (root / "etc" / f"file-with-a-long-name-{n:04d}.conf").write_text(str(n))
    return root


def mixos_disk(base: Path, version: str = "0.1.0", kernels: tuple[str, ...] = ("6.1.90",),
               *, bios: bool = True, uefi: bool = True, os_id: str = "mixos",
               root_mib: int = 24, mkfs_options: tuple[str, ...] = ()) -> Path:
    """A raw disk image (BASE/disk.raw) laid out as the installer lays out a MixOS disk."""
    base.mkdir(parents=True, exist_ok=True)
    tree = root_tree(base, version, kernels, os_id)
    esp_mib = 8
    disk = base / "disk.raw"
    total_mib = 1 + layout.BIOS_BOOT_MIB + esp_mib + root_mib + 1  # + the backup GPT
    with disk.open("wb") as f:
        f.truncate(total_mib * MIB)
    starts = {layout.BIOS_BOOT: 1, layout.ESP: 1 + layout.BIOS_BOOT_MIB,
              layout.ROOT: 1 + layout.BIOS_BOOT_MIB + esp_mib}
    sizes = {layout.BIOS_BOOT: layout.BIOS_BOOT_MIB, layout.ESP: esp_mib, layout.ROOT: root_mib}
    script = "label: gpt\n" + "".join(
        f"{n} : start={starts[n] * SECTORS_PER_MIB}, size={sizes[n] * SECTORS_PER_MIB}, "
        f"type={layout.TYPE_GUIDS[n]}, name={layout.PART_LABELS[n]}\n" for n in starts)
    subprocess.run(["sfdisk", "-q", str(disk)], input=script.encode(), check=True,
                   capture_output=True)
    root = base / "root.ext4"
    run("mkfs.ext4", "-q", "-F", "-L", layout.FS_LABELS[layout.ROOT], *mkfs_options, "-d", tree,
        root, f"{root_mib}M")
    # mkfs.ext4 -d writes linear directories; e2fsck -D indexes the big ones
    # (htree), as the kernel does when a directory outgrows a block.
    fsck = subprocess.run(["e2fsck", "-fyD", str(root)], capture_output=True, check=False)
    assert fsck.returncode in (0, 1), fsck.stderr  # 1: "file system modified"
    place(disk, root, starts[layout.ROOT] * MIB)
    if uefi:
        esp = base / "esp.vfat"
        run("mkfs.vfat", "-n", layout.FS_LABELS[layout.ESP], "-C", esp, str(esp_mib * 1024))
        loader = base / "BOOTX64.EFI"
        loader.write_bytes(b"MZ" + os.urandom(4094))
        run("mmd", "-i", esp, "::EFI", "::EFI/BOOT")
        run("mcopy", "-i", esp, loader, "::" + layout.EFI_LOADER)
        place(disk, esp, starts[layout.ESP] * MIB)
    if bios:
        # GRUB's boot.img in the MBR's code area (the partition table stays) and
        # its first core sector at the start of the BIOS boot partition.
        with disk.open("r+b") as f:
            f.write((GRUB_I386 / "boot.img").read_bytes()[:440])
            f.seek(starts[layout.BIOS_BOOT] * MIB)
            f.write((GRUB_I386 / "diskboot.img").read_bytes())
    return disk


def place(disk: Path, part: Path, offset: int) -> None:
    with disk.open("r+b") as out, part.open("rb") as src:
        out.seek(offset)
        shutil.copyfileobj(src, out)


def to_qcow2(raw: Path, out: Path, compressed: bool, compat: str = "1.1") -> Path:
    run("qemu-img", "convert", *(["-c"] if compressed else []), "-f", "raw", "-O", "qcow2",
        "-o", f"compat={compat}", raw, out)
    return out


def bzimage_header(release: str) -> bytes:
    """The start of a Linux x86 kernel image as far as its version goes: the boot
    protocol's "HdrS" at 0x202 and, at 0x20E, where the version string is
    (minus 0x200), as every bzImage has them (Documentation/arch/x86/boot.rst)."""
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x300).to_bytes(2, "little")
    version = f"{release} (builder@mixos) #1 SMP PREEMPT_DYNAMIC".encode()
    head[0x500:0x500 + len(version)] = version
    return bytes(head)


def mixos_iso(base: Path, version: str = "0.1.0", kernel: str = "6.1.90") -> Path:
    """A MixOS ISO made by `make iso`'s own builder (grub-mkrescue: El Torito for
    BIOS and EFI, /mixos-image.json), with a kernel that is only a header saying
    its version and stand-ins for the initramfs and the root image."""
    from mixbuild.images import iso

    d = base / "iso-inputs"
    d.mkdir(parents=True)
    (d / "bzImage").write_bytes(bzimage_header(kernel))
    (d / "initramfs.img").write_bytes(b"\0" * 2048)
    (d / "root.squashfs").write_bytes(b"\0" * 8192)
    inputs = iso.IsoInputs(kernel=d / "bzImage", initrd=d / "initramfs.img",
                           squashfs=d / "root.squashfs", version=version)
    return iso.build(inputs, base / f"mixos-{version}.iso")


def plain_iso(base: Path, files: dict[str, str]) -> Path:
    """An ISO 9660 image (xorriso, Rock Ridge) holding FILES and no boot catalog."""
    tree = base / "plain-tree"
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    tree.mkdir(exist_ok=True)
    out = base / "plain.iso"
    run("xorriso", "-as", "mkisofs", "-quiet", "-R", "-V", "MIXOS", "-o", out, tree)
    return out


def sdisk(base: Path, images: dict[str, Path]) -> Path:
    """A selection disk laid out as `make sdisk` lays it out (mixbuild.images.sdisk,
    which needs loop devices; made here from files): GPT with BIOS boot, EFI system
    and, as partition 3, an ext4 file system labelled MIXOS-SDISK holding IMAGES
    (name -> file) under /images/."""
    base.mkdir(parents=True, exist_ok=True)
    tree = base / "sdisk-data"
    (tree / layout.SDISK_IMAGES).mkdir(parents=True)
    for name, src in images.items():
        shutil.copyfile(src, tree / layout.SDISK_IMAGES / name)
    data_mib = 16 + sum(p.stat().st_size for p in images.values()) // MIB
    disk = base / "mixos.sdisk"
    with disk.open("wb") as f:
        f.truncate((1 + 1 + 8 + data_mib + 1) * MIB)
    script = ("label: gpt\n"
              f"1 : start={1 * SECTORS_PER_MIB}, size={SECTORS_PER_MIB}, "
              f"type={layout.TYPE_GUIDS[layout.BIOS_BOOT]}\n"
              f"2 : start={2 * SECTORS_PER_MIB}, size={8 * SECTORS_PER_MIB}, "
              f"type={layout.TYPE_GUIDS[layout.ESP]}\n"
              f"3 : start={10 * SECTORS_PER_MIB}, size={data_mib * SECTORS_PER_MIB}, "
              f"type={layout.TYPE_GUIDS[layout.DATA]}, name=mixos-sdisk\n")
    subprocess.run(["sfdisk", "-q", str(disk)], input=script.encode(), check=True,
                   capture_output=True)
    data = base / "data.ext4"
    run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", layout.SDISK_LABEL, "-d", tree, data,
        f"{data_mib}M")
    place(disk, data, 10 * MIB)
    esp = base / "sdisk-esp.vfat"
    run("mkfs.vfat", "-C", esp, str(8 * 1024))
    loader = base / "SDISK-BOOTX64.EFI"
    loader.write_bytes(b"MZ" + os.urandom(4094))
    run("mmd", "-i", esp, "::EFI", "::EFI/BOOT")
    run("mcopy", "-i", esp, loader, "::" + layout.EFI_LOADER)
    place(disk, esp, 2 * MIB)
    with disk.open("r+b") as f:
        f.write((GRUB_I386 / "boot.img").read_bytes()[:440])
        f.seek(1 * MIB)
        f.write((GRUB_I386 / "diskboot.img").read_bytes())
    return disk
