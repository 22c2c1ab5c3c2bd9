"""What a MixOS image file is, read from the file alone: `mix viso info` and
`mix viso list`.

Three kinds of image (docs/boot.md):

    viso   an installed MixOS disk (the VISO, or any disk the installer wrote),
           qcow2 or raw: GPT with the partitions mixboot.layout fixes; the root
           file system (partition 3, ext4) says the version (/etc/os-release,
           ID=mixos) and holds the kernels (/boot/<version>/vmlinuz)
    iso    the live or installer ISO: ISO 9660 with /mixos-image.json
           (mixboot.image; older ISOs: /mixos-release) and the kernel it names,
           whose version is in the kernel's own header
    sdisk  a selection disk (mixboot.sdisk): GPT with partition 3 an ext4 file
           system labelled MIXOS-SDISK holding the images under /images/

Firmware a disk boots under: BIOS when its BIOS boot partition holds GRUB's core
image and the MBR holds boot code; UEFI when its EFI system partition holds
EFI/BOOT/BOOTX64.EFI; an ISO's, from its El Torito boot catalog. Nothing is
mounted, no root, loop device or qemu-img is needed (diskimage and qcow2 read the
file, bootloader.parse_gpt its partitions, ext4, fat and iso9660 their files).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixboot import image, layout
from mixboot.bootloader import SECTOR, BootloaderError, GptPartition, parse_gpt
from mixboot.diskimage import Disk, open_image
from mixboot.ext4 import Ext4
from mixboot.fat import Fat
from mixboot.image import ImageError
from mixboot.iso9660 import SECTOR as ISO_SECTOR
from mixboot.iso9660 import IsoError, IsoImage
from mixboot.kernels import version_key

IMAGE_DIR = Path("/var/lib/mixos/images")
# Files `mix viso list` looks at. Those named for an image are reported when they
# are not MixOS images; .img and .raw name many other things (an initramfs, a
# NoCloud seed), which are skipped silently.
IMAGE_SUFFIXES = (".viso", ".qcow2", ".iso", ".sdisk")
OTHER_SUFFIXES = (".img", ".raw")
MIXOS_ID = "mixos"
MBR_BOOT_CODE = 440  # bytes of sector 0 before the disk signature and partition table


@dataclass(frozen=True)
class ImageInfo:
    path: str
    kind: str  # "viso", "iso" or "sdisk"
    format: str  # "qcow2", "raw" or "iso"
    virtual_size: int  # bytes the VM sees
    file_size: int  # bytes of the file
    disk_usage: int  # bytes the file occupies on its file system (sparse files: less)
    version: str  # MixOS version ("" when the image does not say)
    name: str  # PRETTY_NAME, or the ISO's release line
    kernels: tuple[str, ...]
    firmware: tuple[str, ...]  # "bios", "uefi"
    sha256: str = ""  # "" when not computed (mix viso list)
    details: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kernels"] = list(self.kernels)
        data["firmware"] = list(self.firmware)
        return data


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("\"'")
    return out


def bzimage_version(head: bytes) -> str:
    """The release of a Linux x86 kernel image ("6.1.90"), from the version
    string its boot protocol header points at (the kernel_version field)."""
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return ""
    pointer, = struct.unpack_from("<H", head, 0x20E)
    at = pointer + 0x200
    if not pointer or at >= len(head):
        return ""
    return head[at:at + 128].split(b"\0")[0].decode("latin-1").split(" ")[0]


@dataclass(frozen=True)
class Partitions:
    """A disk's sector 0 and GPT partitions."""

    mbr: bytes
    parts: tuple[GptPartition, ...]

    def get(self, number: int) -> GptPartition | None:
        return next((p for p in self.parts if p.number == number), None)

    def of_type(self, number: int) -> GptPartition | None:
        """Partition NUMBER when it has the type mixboot.layout gives that number,
        else the first partition of that type (a disk laid out by other rules)."""
        wanted = layout.TYPE_GUIDS[number]
        part = self.get(number)
        if part is not None and part.type_guid == wanted:
            return part
        return next((p for p in self.parts if p.type_guid == wanted), None)


def _span(part: GptPartition) -> tuple[int, int]:
    return part.first_lba * SECTOR, part.sectors * SECTOR


def _bios(disk: Disk, table: Partitions) -> str:
    """Why the disk boots under BIOS, or "" if it does not."""
    part = table.of_type(layout.BIOS_BOOT)
    if part is None or not any(table.mbr[:MBR_BOOT_CODE]):
        return ""
    if not any(disk.read(part.first_lba * SECTOR, SECTOR)):
        return ""  # an empty BIOS boot partition: no GRUB core image
    return f"GRUB in the MBR and the BIOS boot partition {part.number}"


def _uefi(disk: Disk, table: Partitions) -> str:
    part = table.of_type(layout.ESP)
    if part is None:
        return ""
    try:
        entry = Fat(disk, *_span(part), f"{disk.path} partition {part.number}").find(
            layout.EFI_LOADER)
    except ImageError:
        return ""
    if entry is None or entry.is_dir or entry.size == 0:
        return ""
    return f"{layout.EFI_LOADER} ({entry.size} bytes) on the EFI system partition {part.number}"


def _firmware(disk: Disk, table: Partitions) -> tuple[tuple[str, ...], dict[str, str]]:
    found = {"bios": _bios(disk, table), "uefi": _uefi(disk, table)}
    return tuple(k for k, v in found.items() if v), {k: v for k, v in found.items() if v}


def _sizes(path: Path, disk: Disk) -> dict[str, Any]:
    """The ImageInfo size fields (virtual, of the file, on its file system)."""
    st = path.stat()
    return {"virtual_size": disk.size, "file_size": st.st_size or disk.size,
            "disk_usage": st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size}


def _qcow2_details(disk: Disk) -> dict[str, str]:
    out = {}
    for attr in ("version", "cluster_size"):
        if hasattr(disk, attr):
            out[f"qcow2_{attr}"] = str(getattr(disk, attr))
    backing = getattr(disk, "backing", None)
    if backing is not None:
        out["backing_file"] = str(backing.path)
    return out


def _root_fs(path: Path, disk: Disk, table: Partitions) -> Ext4:
    root = table.get(layout.ROOT)
    if root is None:
        raise ImageError(f"{path}: not a MixOS image: its GPT has no partition "
                         f"{layout.ROOT} (the root file system of a MixOS disk)")
    try:
        return Ext4(disk, *_span(root), f"{path} partition {layout.ROOT}")
    except ImageError as e:
        raise ImageError(f"{path}: not a MixOS image: {e}") from None


def _installed(path: Path, disk: Disk, table: Partitions, fs: Ext4) -> ImageInfo:
    text = fs.read_file("/etc/os-release") or fs.read_file("/usr/lib/os-release")
    release = os_release(text.decode("utf-8", "replace")) if text else {}
    if release.get("ID") != MIXOS_ID:
        said = f"ID={release['ID']}" if "ID" in release else "no /etc/os-release"
        raise ImageError(f"{path}: not a MixOS image: its root file system has {said}")
    entries = fs.listdir("/boot") or []
    kernels = sorted((e.name for e in entries
                      if e.name != "grub" and (fs.lookup(f"/boot/{e.name}/vmlinuz") is not None)),
                     key=version_key, reverse=True)
    firmware, why = _firmware(disk, table)
    details = {**why, **_qcow2_details(disk), "root_label": fs.label}
    return ImageInfo(path=str(path), kind="viso", format=disk.format,
                     version=release.get("VERSION_ID", ""),
                     name=release.get("PRETTY_NAME", ""), kernels=tuple(kernels),
                     firmware=firmware, details=details, **_sizes(path, disk))


def _sdisk(path: Path, disk: Disk, table: Partitions, fs: Ext4) -> ImageInfo:
    firmware, why = _firmware(disk, table)
    images = sorted(e.name for e in fs.listdir(f"/{layout.SDISK_IMAGES}") or []
                    if not e.name.startswith("."))  # (.partial-*: a killed `mix sdisk add`)
    details = {**why, **_qcow2_details(disk), "images": " ".join(images)}
    return ImageInfo(path=str(path), kind="sdisk", format=disk.format, version="",
                     name="MixOS selection disk", kernels=(), firmware=firmware,
                     details=details, **_sizes(path, disk))


def _iso(path: Path, disk: Disk) -> ImageInfo:
    try:
        with IsoImage.open(path) as iso:
            details = {"volume_label": iso.volume.label}
            try:
                said = image.read_iso(path)
                version, name, kernel_path = said.version, said.title, said.kernel
                details["variant"] = said.variant
                details["build_date"] = said.build_date
            except ImageError:
                # An ISO made before /mixos-image.json existed: its /mixos-release.
                try:
                    line = iso.read("/mixos-release").decode("utf-8", "replace").strip()
                except IsoError:
                    raise ImageError(f"{path}: not a MixOS image: an ISO 9660 image without "
                                     f"{image.INFO_PATH} or /mixos-release") from None
                version, name, kernel_path = line.split()[-1] if line else "", line, \
                    "/boot/vmlinuz"
            kernel = ""
            try:
                record = iso.lookup(kernel_path)
                kernel = bzimage_version(disk.read(record.extent * ISO_SECTOR,
                                                   min(record.size, 64 << 10)))
            except IsoError:
                pass  # named but absent: read_iso has said so for a current image
            firmware = iso.boot_platforms()
    except IsoError as e:
        raise ImageError(f"{path}: not a MixOS image: {e}") from None
    if "bios" in firmware:
        details["bios"] = "El Torito boot image for x86 BIOS" + (
            ", and MBR boot code (as a USB disk)"
            if any(disk.read(0, MBR_BOOT_CODE)) else "")
    if "uefi" in firmware:
        details["uefi"] = "El Torito boot image for EFI"
    return ImageInfo(path=str(path), kind="iso", format="iso", version=version, name=name,
                     kernels=(kernel,) if kernel else (), firmware=firmware,
                     details=details, **_sizes(path, disk))


def _is_iso(disk: Disk) -> bool:
    # The primary volume descriptor's "CD001" at sector 16.
    return disk.size >= 17 * ISO_SECTOR and disk.read(16 * ISO_SECTOR + 1, 5) == b"CD001"


def inspect(path: Path, with_sha256: bool = True) -> ImageInfo:
    """The facts of the MixOS image at PATH; ImageError (message for people) when
    it is not one, FileNotFoundError when there is no such file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    disk = open_image(path)
    try:
        if disk.format == "raw" and _is_iso(disk):
            info = _iso(path, disk)
        else:
            try:
                mbr, parts = parse_gpt(disk.read, disk.size, str(path))
            except BootloaderError as e:
                # What follows "; " is advice for the installer about to write the disk.
                reason = str(e).removeprefix(f"{path}: ").split("; ")[0]
                raise ImageError(f"{path}: not a MixOS image: {reason}") from None
            table = Partitions(mbr, tuple(parts))
            fs = _root_fs(path, disk, table)
            if fs.label == layout.SDISK_LABEL:  # partition 3 of an SDISK is its data
                info = _sdisk(path, disk, table, fs)
            else:
                info = _installed(path, disk, table, fs)
    finally:
        disk.close()
    if with_sha256:
        info = ImageInfo(**{**info.__dict__, "sha256": sha256(path)})
    return info


def list_images(directory: Path) -> tuple[list[ImageInfo], list[str]]:
    """The MixOS images in DIRECTORY (by suffix), and a message for each file
    there named as an image that is not one."""
    infos, problems = [], []
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.suffix not in IMAGE_SUFFIXES + OTHER_SUFFIXES or not path.is_file():
            continue
        try:
            infos.append(inspect(path, with_sha256=False))
        except (ImageError, OSError) as e:
            if path.suffix in IMAGE_SUFFIXES:
                problems.append(str(e))
    return infos, problems

