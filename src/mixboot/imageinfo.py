"""What a MixOS image file is, read from the file alone: `mix viso info` and
`mix viso list`.

Three kinds of image (docs/boot.md):

    viso   an installed MixOS disk (the VISO, or any disk the installer wrote),
           qcow2 or raw: GPT with the partitions mixboot.layout fixes; the root
           file system (partition 3, ext4) says the version (/etc/os-release,
           ID=mixos) and holds the kernels (/boot/<version>/vmlinuz)
    iso    the live or installer ISO: ISO 9660 with /mixos-release and
           /boot/vmlinuz (its version from the kernel's own header)
    sdisk  a selection disk: GPT with a partition (its GPT name or its file
           system's label MIXOS-SDISK) holding other images under /images/

Firmware a disk boots under: BIOS when GPT partition 1 is a BIOS boot partition
holding GRUB's core image and the MBR holds boot code; UEFI when partition 2 is
an EFI system partition holding EFI/BOOT/BOOTX64.EFI. Nothing is mounted, no
root, loop device or qemu-img is needed (diskimage, qcow2, gpt, ext4, fat,
iso9660 read the file).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixboot import gpt, iso9660, layout
from mixboot.diskimage import Disk, ImageError, open_image
from mixboot.ext4 import Ext4
from mixboot.fat import Fat
from mixboot.kernels import version_key

IMAGE_DIR = Path("/var/lib/mixos/images")
# Files `mix viso list` looks at. Those named for an image are reported when they
# are not MixOS images; .img and .raw name many other things (an initramfs, a
# NoCloud seed), which are skipped silently.
IMAGE_SUFFIXES = (".viso", ".qcow2", ".iso", ".sdisk")
OTHER_SUFFIXES = (".img", ".raw")
SDISK_LABEL = "MIXOS-SDISK"
MIXOS_ID = "mixos"


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
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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


def _of_type(table: gpt.PartitionTable, number: int) -> gpt.Partition | None:
    """Partition NUMBER when it has the type mixboot.layout gives that number, else
    the first partition of that type (a disk laid out by other rules)."""
    wanted = layout.TYPE_GUIDS[number]
    part = table.get(number)
    if part is not None and part.type_guid == wanted:
        return part
    return next((p for p in table.partitions if p.type_guid == wanted), None)


def _label(disk: Disk, part: gpt.Partition) -> str:
    """The label of the ext4 or FAT file system in PART, or ""."""
    for reader in (Ext4, Fat):
        try:
            return reader(disk, part.offset, part.size, f"{disk.path} partition {part.number}").label
        except ImageError:
            continue
    return ""


def _sdisk_partition(disk: Disk, table: gpt.PartitionTable) -> gpt.Partition | None:
    for part in table.partitions:
        if part.name.upper() == SDISK_LABEL:
            return part
    for part in table.partitions:
        if part.type_guid not in (layout.TYPE_GUIDS[layout.BIOS_BOOT],
                                  layout.TYPE_GUIDS[layout.SWAP]) \
                and _label(disk, part).upper() == SDISK_LABEL:
            return part
    return None


def _bios(disk: Disk, table: gpt.PartitionTable) -> str:
    """Why the disk boots under BIOS, or "" if it does not."""
    part = _of_type(table, layout.BIOS_BOOT)
    if part is None:
        return ""
    if not any(table.mbr_boot_code):
        return ""
    if not any(disk.read(part.offset, gpt.SECTOR)):
        return ""  # an empty BIOS boot partition: no GRUB core image
    return f"GRUB in the MBR and the BIOS boot partition {part.number}"


def _uefi(disk: Disk, table: gpt.PartitionTable) -> str:
    part = _of_type(table, layout.ESP)
    if part is None:
        return ""
    try:
        entry = Fat(disk, part.offset, part.size, f"{disk.path} partition {part.number}").find(
            layout.EFI_LOADER)
    except ImageError:
        return ""
    if entry is None or entry.is_dir or entry.size == 0:
        return ""
    return f"{layout.EFI_LOADER} ({entry.size} bytes) on the EFI system partition {part.number}"


def _firmware(disk: Disk, table: gpt.PartitionTable) -> tuple[tuple[str, ...], dict[str, str]]:
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


def _installed(path: Path, disk: Disk, table: gpt.PartitionTable) -> ImageInfo:
    root = table.get(layout.ROOT)
    where = f"{path} partition {layout.ROOT}"
    if root is None:
        raise ImageError(f"{path}: not a MixOS image: its GPT has no partition "
                         f"{layout.ROOT} (the root file system of a MixOS disk)")
    try:
        fs = Ext4(disk, root.offset, root.size, where)
    except ImageError as e:
        raise ImageError(f"{path}: not a MixOS image: {e}") from None
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


def _sdisk(path: Path, disk: Disk, table: gpt.PartitionTable, data: gpt.Partition) -> ImageInfo:
    firmware, why = _firmware(disk, table)
    details = {**why, **_qcow2_details(disk)}
    try:
        fs = Ext4(disk, data.offset, data.size, f"{path} partition {data.number}")
        images = sorted(e.name for e in fs.listdir("/images") or [])
        details["images"] = " ".join(images)
    except ImageError:
        pass  # another file system than ext4: the images are not listed
    return ImageInfo(path=str(path), kind="sdisk", format=disk.format, version="",
                     name="MixOS selection disk", kernels=(), firmware=firmware,
                     details=details, **_sizes(path, disk))


def _iso(path: Path, disk: Disk) -> ImageInfo:
    release = iso9660.read_file(disk, "/mixos-release")
    if release is None:
        raise ImageError(f"{path}: not a MixOS image: an ISO 9660 image without "
                         "/mixos-release")
    line = release.decode("utf-8", "replace").strip()
    kernel = iso9660.read_file(disk, "/boot/vmlinuz", limit=64 << 10)
    version = bzimage_version(kernel) if kernel else ""
    firmware = iso9660.boot_platforms(disk)
    details = {"volume_label": iso9660.volume_label(disk)}
    if "bios" in firmware:
        details["bios"] = "El Torito boot image for x86 BIOS" + (
            ", and MBR boot code (as a USB disk)" if any(disk.read(0, 440)) else "")
    if "uefi" in firmware:
        details["uefi"] = "El Torito boot image for EFI"
    return ImageInfo(path=str(path), kind="iso", format="iso",
                     version=line.split()[-1] if line else "", name=line,
                     kernels=(version,) if version else (), firmware=firmware,
                     details=details, **_sizes(path, disk))


def inspect(path: Path, with_sha256: bool = True) -> ImageInfo:
    """The facts of the MixOS image at PATH; ImageError (message for people) when
    it is not one, FileNotFoundError when there is no such file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    disk = open_image(path)
    try:
        if disk.format == "raw" and iso9660.is_iso(disk):
            info = _iso(path, disk)
        else:
            try:
                table = gpt.read(disk)
            except ImageError as e:
                reason = str(e).removeprefix(f"{path}: ")
                raise ImageError(f"{path}: not a MixOS image: {reason}") from None
            sdisk = _sdisk_partition(disk, table)
            info = _sdisk(path, disk, table, sdisk) if sdisk else _installed(path, disk, table)
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


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"

