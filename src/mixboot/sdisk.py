"""The SDISK: a disk that carries several MixOS images and a GRUB menu to pick one
(this release and the previous one, a system and its installer, ...).

Layout (mixboot.layout): GPT with the BIOS boot partition (1) and the EFI system
partition (2) of every MixOS disk, and an ext4 data partition (3) labelled
MIXOS-SDISK holding

    /images/NAME.iso     the images, MixOS ISOs as `make iso` writes them
    /boot/grub/grub.cfg  the menu, written here from the images' own
                         mixos-image.json (mixboot.menu.sdisk_menu)
    /boot/grub/grubenv   mixos_default (the image booted by default), mixos_vram
    /boot/grub/password  optional (mode 0600): the GRUB superuser's password hash;
                         editing and rescue entries then need it (docs/security.md)

An `Sdisk` works on the data partition mounted at a directory; `opened()` mounts
it: the running system's (booted from the SDISK: /run/mixos/sdisk, remounted
read-write for a change) or the one of a disk given by path (a device or an
image file, through a loop device: root only).

Power cuts: `add` copies the image under a hidden temporary name, syncs it,
renames it into place and only then rewrites the menu (itself written to a
temporary file and renamed); `remove` rewrites the menu first and deletes the
file after. At no moment does the menu name a file that is absent or half
written (ext4's journal keeps each rename whole); a temporary file left by a
killed `add` is deleted by the next change.

Standard library only: this runs inside MixOS's trimmed Python.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mixboot import bootloader, durable, grubenv, layout, menu, mounts
from mixboot.image import ImageError, ImageInfo, read_iso

BOOT_ENV = Path("/run/mixos/boot.env")
RUNNING_MOUNT = Path("/run/mixos/sdisk")
GRUB_DIR = "boot/grub"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,100}\.iso")
PARTIAL_PREFIX = ".partial-"
# Free space kept on the data partition after an add: a grub.cfg rewrite never
# runs out of room.
RESERVE = 1 << 20
CHUNK = 1 << 20


class SdiskError(RuntimeError):
    """What the user asked cannot be done; nothing was changed."""


@dataclass(frozen=True)
class Image:
    file: str
    size: int
    info: ImageInfo | None  # None: not readable as a MixOS image (see error)
    error: str = ""


def boot_env(path: Path = BOOT_ENV) -> dict[str, str]:
    """What the initramfs decided for this boot (initramfs/init, boot.env)."""
    env: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
    return env


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise SdiskError(f"image name {name!r}: use letters, digits, '.', '_', '+' or '-', "
                         "ending in .iso (for example mixos-0.1.0.iso)")
    return name


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Sdisk:
    """The SDISK data partition mounted at ROOT."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images_dir = root / layout.SDISK_IMAGES
        self.grub_dir = root / GRUB_DIR
        if not self.images_dir.is_dir():
            raise SdiskError(f"{root}: no {layout.SDISK_IMAGES}/ directory: not an SDISK's "
                             f"data partition (labelled {layout.SDISK_LABEL})")

    # --- reading -------------------------------------------------------------------
    def files(self) -> list[str]:
        return sorted(p.name for p in self.images_dir.iterdir()
                      if p.is_file() and NAME_RE.fullmatch(p.name))

    def images(self) -> list[Image]:
        out = []
        for name in self.files():
            path = self.images_dir / name
            try:
                out.append(Image(name, path.stat().st_size, read_iso(path)))
            except ImageError as e:
                out.append(Image(name, path.stat().st_size, None, str(e)))
        return out

    def env(self) -> dict[str, str]:
        path = self.grub_dir / "grubenv"
        return grubenv.load(path) if path.is_file() else {}

    def default(self) -> str | None:
        files = self.files()
        wanted = self.env().get(menu.DEFAULT_VAR, "")
        if wanted in files:
            return wanted
        return files[0] if files else None

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    # --- changing ------------------------------------------------------------------
    def clean_partials(self) -> list[str]:
        """Delete what a killed `add` left (hidden temporary files); their names."""
        gone = []
        for p in self.images_dir.iterdir():
            if p.name.startswith(PARTIAL_PREFIX):
                p.unlink()
                gone.append(p.name)
        if gone:
            durable.fsync_dir(self.images_dir)
        return gone

    def set_env(self, **values: str) -> None:
        path = self.grub_dir / "grubenv"
        if not path.is_file():
            self.grub_dir.mkdir(parents=True, exist_ok=True)
            grubenv.create(path)
        grubenv.update(path, values)

    def password_hash(self) -> str:
        path = self.grub_dir / "password"
        return path.read_text().strip() if path.is_file() else ""

    def set_password_hash(self, password_hash: str) -> None:
        """Keep PASSWORD_HASH (grub-mkpasswd-pbkdf2's; "" removes it), then the menu."""
        try:
            menu.check_password_hash(password_hash)
        except ValueError as e:
            raise SdiskError(str(e)) from None
        path = self.grub_dir / "password"
        self.grub_dir.mkdir(parents=True, exist_ok=True)
        if password_hash:
            durable.write_text(path, password_hash + "\n", mode=0o600)
        else:
            path.unlink(missing_ok=True)
        self.write_menu()

    def write_menu(self) -> Path:
        images = [menu.MenuImage(img.file, img.info) for img in self.images()
                  if img.info is not None]
        default = self.default() or ""
        password = self.password_hash()
        self.grub_dir.mkdir(parents=True, exist_ok=True)
        path = self.grub_dir / "grub.cfg"
        # A menu holding the hash is readable by root only, as on an installed disk.
        durable.write_text(path, menu.sdisk_menu(images, default=default,
                                                 password_hash=password),
                           mode=0o600 if password else 0o644)
        return path

    def add(self, source: Path, name: str | None = None, *, make_default: bool = False) -> Image:
        """Copy the MixOS image SOURCE in as NAME (default: its file name)."""
        name = check_name(name or source.name)
        try:
            info = read_iso(source)
        except ImageError as e:
            raise SdiskError(str(e)) from None
        self.clean_partials()
        target = self.images_dir / name
        if target.exists():
            raise SdiskError(f"the SDISK already carries {name}; remove it first "
                             "('mix sdisk remove NAME') or add this one under another "
                             "name (--name)")
        size = source.stat().st_size
        free = self.free_bytes()
        if size + RESERVE > free:
            raise SdiskError(f"{source} needs {size / 2**20:.1f} MiB; the SDISK has "
                             f"{free / 2**20:.1f} MiB free (remove an image first)")
        has_default = self.env().get(menu.DEFAULT_VAR) in self.files()
        tmp = self.images_dir / f"{PARTIAL_PREFIX}{name}"
        want = hashlib.sha256()
        got = hashlib.sha256()
        try:
            with source.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    want.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            with tmp.open("rb") as check:  # what the disk holds, not what was sent
                while chunk := check.read(CHUNK):
                    got.update(chunk)
            if got.digest() != want.digest():
                raise SdiskError(f"the copy of {source} on the SDISK differs from it "
                                 "(a failing disk?); nothing was added")
            tmp.replace(target)
            durable.fsync_dir(self.images_dir)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if make_default or not has_default:
            self.set_env(**{menu.DEFAULT_VAR: name})
        self.write_menu()
        return Image(name, size, info)

    def remove(self, name: str, *, running: str | None = None) -> None:
        files = self.files()
        if name not in files:
            raise SdiskError(f"the SDISK carries no image {name!r}; "
                             f"it carries: {', '.join(files) or 'none'}")
        if name == running:
            raise SdiskError(f"{name} is the image this system runs from; boot another "
                             "image of the SDISK to remove it")
        if len(files) == 1:
            raise SdiskError(f"{name} is the SDISK's last image: an SDISK without an "
                             "image does not boot; add another first")
        self.clean_partials()
        path = self.images_dir / name
        hidden = self.images_dir / f"{PARTIAL_PREFIX}{name}"
        # Out of the menu first (the hidden name is not listed), then gone.
        path.replace(hidden)
        durable.fsync_dir(self.images_dir)
        if self.env().get(menu.DEFAULT_VAR) == name:
            self.set_env(**{menu.DEFAULT_VAR: self.files()[0]})
        self.write_menu()
        hidden.unlink()
        durable.fsync_dir(self.images_dir)

    def set_default(self, name: str) -> None:
        if name not in self.files():
            raise SdiskError(f"the SDISK carries no image {name!r}; "
                             f"it carries: {', '.join(self.files()) or 'none'}")
        self.set_env(**{menu.DEFAULT_VAR: name})
        self.write_menu()


# --- finding and mounting the data partition -------------------------------------------
def data_partition_span(disk: str) -> tuple[int, int]:
    """Byte offset and size of DISK's SDISK data partition (a GPT read, no tools)."""
    try:
        fd = os.open(disk, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SdiskError(f"{disk}: {e.strerror}") from None
    try:
        if os.pread(fd, 4, 0) == b"QFI\xfb":
            raise SdiskError(f"{disk} is a qcow2 image; --disk reads raw disks: attach it "
                             "with 'qemu-nbd --connect=/dev/nbd0 FILE' and give --disk "
                             "/dev/nbd0, or 'qemu-img convert -O raw' it")
        _, parts = bootloader.read_gpt(fd, disk)
        part = next((p for p in parts if p.number == layout.SDISK_DATA), None)
        if part is None:
            raise SdiskError(f"{disk}: no partition {layout.SDISK_DATA}: not an SDISK")
        offset = part.first_lba * bootloader.SECTOR
        label = ext4_label(os.pread(fd, EXT4_SUPERBLOCK_SIZE, offset + EXT4_SUPERBLOCK_AT))
    except bootloader.BootloaderError as e:
        raise SdiskError(f"{e}: not an SDISK") from None
    finally:
        os.close(fd)
    if label != layout.SDISK_LABEL:
        raise SdiskError(f"{disk}: partition {layout.SDISK_DATA} is not an ext4 file system "
                         f"labelled {layout.SDISK_LABEL}: not an SDISK")
    return offset, part.sectors * bootloader.SECTOR


# The ext4 superblock: 1024 bytes in; its magic at 56, its volume label at 120.
EXT4_SUPERBLOCK_AT = 1024
EXT4_SUPERBLOCK_SIZE = 1024


def ext4_label(superblock: bytes) -> str | None:
    """The volume label of an ext2/3/4 superblock, or None if it is not one."""
    if len(superblock) < 136 or superblock[56:58] != b"\x53\xef":
        return None
    return superblock[120:136].split(b"\0", 1)[0].decode("utf-8", "replace")


def _mount_options(readonly: bool) -> str:
    return ("ro" if readonly else "rw") + ",nosuid,nodev,noexec"


@contextlib.contextmanager
def _mounted(source: str, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        raise SdiskError("mounting an SDISK's data partition needs root")
    with mounts.mounted(source, options, fstype="ext4", prefix="mixos-sdisk-") as where:
        yield where


@contextlib.contextmanager
def opened(disk: str | None = None, *, readonly: bool = True) -> Iterator[Sdisk]:
    """The SDISK at DISK (a device or an image file), or, without DISK, the one
    this system booted from; mounted read-write unless READONLY."""
    try:
        with _opened(disk, readonly) as sd:
            yield sd
    except mounts.MountError as e:
        raise SdiskError(str(e)) from None


@contextlib.contextmanager
def _opened(disk: str | None, readonly: bool) -> Iterator[Sdisk]:
    if disk is not None:
        path = Path(disk)
        if not path.exists():
            raise SdiskError(f"{disk}: no such file or device")
        if path.is_block_device() and Path(f"/sys/class/block/{path.name}/partition").exists():
            source, options = disk, _mount_options(readonly)  # the data partition itself
        else:
            offset, size = data_partition_span(disk)
            source = disk
            options = f"{_mount_options(readonly)},loop,offset={offset},sizelimit={size}"
        with _mounted(source, options) as where:
            yield Sdisk(where)
        return
    env = boot_env()
    device = env.get("MIXOS_SDISK", "")
    if not device:
        raise SdiskError("this system did not boot from an SDISK; name one with "
                         "--disk FILE|DEVICE")
    if str(RUNNING_MOUNT) in mounts.mount_types():
        if readonly:
            yield Sdisk(RUNNING_MOUNT)
            return
        mounts.run(["mount", "-o", "remount,rw", str(RUNNING_MOUNT)])
        try:
            yield Sdisk(RUNNING_MOUNT)
        finally:
            os.sync()
            mounts.run(["mount", "-o", "remount,ro", str(RUNNING_MOUNT)])
        return
    # VRAM released it at boot: mount it for this command.
    with _mounted(device, _mount_options(readonly)) as where:
        yield Sdisk(where)


def running_image() -> str | None:
    image = boot_env().get("MIXOS_IMAGE", "")
    return image.rsplit("/", 1)[-1] if image else None


def listing(sd: Sdisk, *, running: str | None, with_hash: bool = True) -> list[dict[str, object]]:
    """What `mix sdisk list` shows: one dict per image."""
    default = sd.default()
    out: list[dict[str, object]] = []
    for img in sd.images():
        row: dict[str, object] = {
            "name": img.file, "size": img.size,
            "version": img.info.version if img.info else None,
            "build_date": img.info.build_date if img.info else None,
            "variant": img.info.variant if img.info else None,
            "default": img.file == default, "running": img.file == running,
        }
        if with_hash:
            row["sha256"] = sha256(sd.images_dir / img.file)
        if img.error:
            row["error"] = img.error
        out.append(row)
    return out
