"""The target disk: which one, whether it may be written, and laying out its
partitions and file systems (mixboot.layout, plan.Plan).

Every check runs before anything is written: a missing disk, one that is too
small, one that holds data (unless install.yaml says `wipe: true`), one that is
mounted, and the disk the running system booted from are refused with a message
that names the disk and the reason.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mixboot import layout
from mixinstall.plan import Plan, sfdisk_script
from mixinstall.steps import InstallError, Progress

SYS_BLOCK = Path("/sys/class/block")
BOOT_ENV = Path("/run/mixos/boot.env")
# Kinds of block device that are never an install target.
NOT_DISKS = ("loop", "ram", "sr", "zram", "dm-", "md", "fd", "nbd")
PROBE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Target:
    path: str
    size_bytes: int

    @property
    def size_mib(self) -> int:
        return self.size_bytes // (1024 * 1024)


@dataclass(frozen=True)
class FsIds:
    """The identities the installer gives the new file systems and partitions
    (chosen here, so that fstab and the boot menu never depend on reading them back)."""

    root: str = field(default_factory=lambda: str(uuid.uuid4()))
    data: str = field(default_factory=lambda: str(uuid.uuid4()))
    esp: str = field(default_factory=lambda: uuid.uuid4().hex[:8].upper())  # FAT volume id
    disk_guid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())

    @property
    def esp_fstab(self) -> str:
        return f"{self.esp[:4]}-{self.esp[4:]}"


def device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _sys_name(rdev: int) -> Path | None:
    p = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    return p.resolve() if p.exists() else None


def whole_disk(rdev: int) -> int:
    """The device number of the disk that holds RDEV (itself when it is a disk)."""
    sys = _sys_name(rdev)
    if sys is not None and (sys / "partition").exists():
        major, minor = (sys.parent / "dev").read_text().split(":")
        return os.makedev(int(major), int(minor))
    return rdev


def boot_disks() -> set[int]:
    """Device numbers of the disks the running system came from: the live medium,
    an installed root, an SDISK, and whatever holds / and /run/mixos/medium."""
    found: set[int] = set()
    names: list[str] = []
    if BOOT_ENV.is_file():
        for line in BOOT_ENV.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("MIXOS_MEDIUM", "MIXOS_ROOT", "MIXOS_SDISK") and value.startswith("/dev/"):
                names.append(value)
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt = line.split()[:2]
            if mnt in ("/", "/run/mixos/medium") and dev.startswith("/dev/"):
                names.append(dev)
    except OSError:
        pass
    return found | disks_of(names)


def mounted_devices() -> set[int]:
    """Disks with a mounted file system or active swap on them (or on a partition)."""
    devs: list[str] = []
    try:
        devs += [line.split()[0] for line in Path("/proc/mounts").read_text().splitlines()]
        devs += [line.split()[0] for line in Path("/proc/swaps").read_text().splitlines()[1:]]
    except OSError:
        pass
    return disks_of(devs)


def disks_of(names: list[str]) -> set[int]:
    """Device numbers of the whole disks holding the block devices NAMES."""
    out: set[int] = set()
    for name in names:
        try:
            st = os.stat(name)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            out.add(whole_disk(st.st_rdev))
    return out


def holds_data(path: str) -> str | None:
    """Why the disk at PATH looks in use (a partition table, a file system, any
    byte that is not zero in its first MiB), or None when it is blank."""
    try:
        with open(path, "rb") as f:
            head = f.read(PROBE_BYTES)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART":
        return "it has a partition table"
    if any(head):
        return "it is not blank (its first MiB holds data: a file system or a boot loader)"
    return None


def candidate_disks() -> list[str]:
    """Whole disks of this machine, in the kernel's order (vda, vdb, sda, ...)."""
    if not SYS_BLOCK.is_dir():
        return []
    out = []
    for entry in sorted(SYS_BLOCK.iterdir(), key=lambda p: p.name):
        name = entry.name
        if (entry / "partition").exists() or name.startswith(NOT_DISKS):
            continue
        try:
            if (entry / "ro").read_text().strip() == "1" or \
                    int((entry / "size").read_text()) == 0:
                continue
        except (OSError, ValueError):
            continue
        out.append(f"/dev/{name}")
    return out


def first_empty_disk() -> str:
    booted = boot_disks()
    seen = []
    for dev in candidate_disks():
        try:
            st = os.stat(dev)
        except OSError:
            continue
        if st.st_rdev in booted:
            seen.append(f"{dev} (the boot medium)")
            continue
        why = holds_data(dev)
        if why is None:
            return dev
        seen.append(f"{dev} ({why})")
    raise InstallError("disk: auto found no empty disk"
                       + (f"; disks seen: {', '.join(seen)}" if seen else "; no disks seen")
                       + ". Attach a blank disk, or name one with disk: /dev/... and wipe: true")


def check_target(path: str, *, need_mib: int, wipe: bool, allow_file: bool = False) -> Target:
    """The disk to install on, after every check (nothing is written here)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        present = ", ".join(candidate_disks()) or "none"
        raise InstallError(f"disk {path} does not exist (disks here: {present})") from None
    if not stat.S_ISBLK(st.st_mode) and not (allow_file and stat.S_ISREG(st.st_mode)):
        raise InstallError(f"disk {path} is not a block device")
    if stat.S_ISBLK(st.st_mode):
        if (_sys_name(st.st_rdev) or Path("/nonexistent")).joinpath("partition").exists():
            raise InstallError(f"disk {path} is a partition; name the whole disk")
        if st.st_rdev in boot_disks():
            raise InstallError(f"disk {path} is the medium this system booted from; "
                               "install onto another disk")
        if st.st_rdev in mounted_devices():
            raise InstallError(f"disk {path} has mounted file systems or active swap; "
                               "unmount them first")
    size = device_size(path)
    if size // (1024 * 1024) < need_mib:
        raise InstallError(f"disk {path} is {size // (1024 * 1024)} MiB; this installation "
                           f"needs at least {need_mib} MiB")
    why = holds_data(path)
    if why is not None and not wipe:
        raise InstallError(f"disk {path} holds data: {why}. Nothing was written. Set "
                           "'wipe: true' in install.yaml to erase it")
    return Target(path, size)


def partition(progress: Progress, target: Target, plan: Plan, ids: FsIds) -> None:
    """Write the GPT (old signatures wiped), and wait for the partitions' devices."""
    script = sfdisk_script(plan, target.path, disk_guid=ids.disk_guid)
    progress.run(["sfdisk", "--quiet", "--wipe", "always", "--wipe-partitions", "always",
                  target.path], input=script)
    if stat.S_ISBLK(os.stat(target.path).st_mode):
        wait_for_partitions(progress, target.path, [p.number for p in plan.partitions])


def wait_for_partitions(progress: Progress, disk: str, numbers: list[int],
                        timeout: float = 10) -> None:
    """Wait for the kernel's devices of the new partitions. sfdisk asks the kernel
    to re-read the table; where that does not happen (seen with loop devices on
    some hosts), partx adds them one by one (BLKPG)."""
    deadline = time.monotonic() + timeout
    missing = numbers
    asked = False
    while True:
        missing = [n for n in numbers if not os.path.exists(layout.partition_device(disk, n))]
        if not missing or time.monotonic() > deadline:
            break
        if not asked and time.monotonic() > deadline - timeout + 1:
            asked = True
            try:
                progress.run(["partx", "--update", disk])
            except InstallError as e:
                progress.log(f"partx: {e}", console=False)
        time.sleep(0.1)
    if missing:
        raise InstallError(f"the kernel shows no device for partition(s) "
                           f"{', '.join(map(str, missing))} of {disk} after partitioning")


def make_filesystems(progress: Progress, disk: str, plan: Plan, ids: FsIds) -> None:
    dev = layout.partition_device
    # No lazy initialisation: the inode tables and journal are zeroed now, not by
    # a kernel thread after the first boot (which would fill a VISO's qcow2 with
    # zero clusters and slow the first minutes of every instance).
    ext4 = ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
    progress.run(["mkfs.vfat", "-n", layout.FS_LABELS[layout.ESP], "-i", ids.esp,
                  dev(disk, layout.ESP)])
    progress.run([*ext4, "-L", layout.FS_LABELS[layout.ROOT], "-U", ids.root,
                  dev(disk, layout.ROOT)])
    if plan.get(layout.SWAP) is not None:
        # BusyBox's mkswap picks the UUID itself (no -U): install.py reads it back.
        progress.run(["mkswap", "-L", layout.PART_LABELS[layout.SWAP], dev(disk, layout.SWAP)])
    if plan.get(layout.DATA) is not None:
        progress.run([*ext4, "-L", layout.FS_LABELS[layout.DATA], "-U", ids.data,
                      dev(disk, layout.DATA)])
