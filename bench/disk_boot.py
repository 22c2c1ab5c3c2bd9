"""Boot an installed-style MixOS disk under SeaBIOS and OVMF, by hand.

Proves the GRUB kit (`make bootloader`) and its pure-Python installer
(mixboot.bootloader.install) make a disk laid out as mixboot.layout says boot
with both firmwares, and that GRUB's save_env can write the environment block
(mixboot.grubenv) on the root file system as mke2fs makes it here.

    PYTHONPATH=src .venv/bin/python bench/disk_boot.py              # as root
    PYTHONPATH=src .venv/bin/python bench/disk_boot.py --keep /tmp/disk  # keep the image
    PYTHONPATH=src .venv/bin/python bench/disk_boot.py --mkfs-ext4 "-O ^metadata_csum"

Steps: a 1 GiB sparse image; sfdisk GPT (p1 BIOS boot 1 MiB, p2 ESP 32 MiB, p3
root, the rest); loop devices; mkfs.vfat p2, mkfs.ext4 p3; artifacts/rootfs/ copied
into p3 with the kernel at /boot/vmlinuz, the initramfs at /boot/initramfs.img,
a grub.cfg and a grubenv; install() onto the whole disk's loop device; then each firmware
boots the image (q35, TCG, virtio disk) with the kernel argument "rescue", and
the time from QEMU's start to the initramfs's "rescue requested" is printed.

The grub.cfg loads the environment block, prints the variable `oneshot`, sets
it to "seen-by-<platform>" and saves it (save_env), as a one-shot boot entry
would: after each boot the block is read from the image to check GRUB wrote it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mixboot import bootloader, grubenv, layout
from mixbuild.common import ARTIFACTS
from mixbuild.vm.guest import VM, VMError
from mixbuild.vm.qemu import QEMU, Machine, ovmf_firmware

RESCUE_LINE = "rescue requested"
GRUB_LINE = r"mixos-disk-test: GRUB on (\w+), oneshot=(\S*)[\r\n]"
GRUB_CFG = """\
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial
load_env
echo "mixos-disk-test: GRUB on $grub_platform, oneshot=$oneshot"
set oneshot="seen-by-$grub_platform"
save_env oneshot
if [ "$grub_platform" = pc ]; then
    linux16 /boot/vmlinuz console=ttyS0,115200 rescue
    initrd16 /boot/initramfs.img
else
    linux /boot/vmlinuz console=ttyS0,115200 rescue
    initrd /boot/initramfs.img
fi
boot
"""


def sh(*cmd: str | Path, capture: bool = False) -> str:
    argv = [str(c) for c in cmd]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {shlex.join(argv)}\n{proc.stderr.strip()}")
    return proc.stdout if capture else ""


def partition(image: Path) -> None:
    with image.open("wb") as f:
        f.truncate(1 << 30)
    script = "label: gpt\n" + "".join(
        f"size={size}, type={layout.TYPE_GUIDS[n]}, name={layout.PART_LABELS[n]}\n"
        for n, size in ((layout.BIOS_BOOT, f"{layout.BIOS_BOOT_MIB}MiB"),
                        (layout.ESP, f"{layout.ESP_MIB}MiB"), (layout.ROOT, "+")))
    subprocess.run(["sfdisk", "--quiet", str(image)], input=script, text=True, check=True)


@contextlib.contextmanager
def attached(image: Path) -> Iterator[dict[int, str]]:
    """IMAGE on loop devices: {0: the whole disk, N: partition N}. One loop device
    per partition (--offset, --sizelimit) rather than losetup -P: the build hosts'
    kernel does not scan loop devices for partitions (no loopNpM appears)."""
    table = json.loads(sh("sfdisk", "--json", image, capture=True))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    devices: dict[int, str] = {}
    try:
        devices[0] = sh("losetup", "--show", "-f", image, capture=True).strip()
        for n, part in enumerate(table["partitions"], start=1):
            devices[n] = sh("losetup", "--show", "-f", "--offset", str(part["start"] * sector),
                            "--sizelimit", str(part["size"] * sector), image,
                            capture=True).strip()
        yield devices
    finally:
        for dev in devices.values():
            sh("losetup", "-d", dev)


@contextlib.contextmanager
def mounted(device: str, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    sh("mount", device, where)
    try:
        yield where
    finally:
        sh("umount", where)


def populate(root: Path, rootfs: Path, kernel: Path, initrd: Path) -> None:
    sh("cp", "-a", f"{rootfs}/.", root)
    boot = root / "boot"
    (boot / "grub").mkdir(parents=True, exist_ok=True)
    sh("cp", kernel, boot / "vmlinuz")
    sh("cp", initrd, boot / "initramfs.img")
    (boot / "grub" / "grub.cfg").write_text(GRUB_CFG)
    env = boot / "grub" / "grubenv"
    env.unlink(missing_ok=True)  # a fresh image: no GRUB has located this file yet
    grubenv.create(env, {"oneshot": "pending"})


def set_oneshot(image: Path, tmp: Path, value: str | None) -> dict[str, str]:
    """The image's environment block; with VALUE, `oneshot` set to it first (in place)."""
    with attached(image) as dev, mounted(dev[layout.ROOT], tmp / "root") as root:
        path = root / "boot" / "grub" / "grubenv"
        if value is not None:
            grubenv.update(path, {"oneshot": value})
        return grubenv.load(path)


def boot(image: Path, *, uefi: bool, log: Path, timeout: float) -> dict[str, object]:
    argv = [QEMU, "-nodefaults", "-no-user-config", "-machine", "q35,accel=tcg",
            "-m", "256M", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-drive", f"file={image},if=virtio,format=raw"]
    if uefi:
        argv += ["-bios", str(ovmf_firmware())]
    # qemu.Machine attaches disks read-only and boots only an ISO or a kernel; this
    # disk must boot and stay writable (save_env), so the argv is this script's own.
    vm = VM(Machine(iso=image, network=False), log)
    vm.argv = argv
    print(f"  {shlex.join(argv)}")
    with vm:
        try:
            grub = vm.wait_for(GRUB_LINE, timeout)
            vm.wait_for(RESCUE_LINE, timeout)
        except VMError as e:
            return {"ok": False, "error": str(e).splitlines()[0], "console": str(log)}
        return {"ok": True, "platform": grub.group(1), "oneshot_seen": grub.group(2),
                "grub_s": round(vm.arrival_of(GRUB_LINE) or 0, 2),
                "rescue_s": round(vm.arrival_of(RESCUE_LINE) or 0, 2), "console": str(log)}


def ext4_features(device: str) -> str:
    out = sh("dumpe2fs", "-h", device, capture=True)
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Filesystem features:")), "?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, default=ARTIFACTS / "grub")
    parser.add_argument("--rootfs", type=Path, default=ARTIFACTS / "rootfs")
    parser.add_argument("--kernel", type=Path, default=ARTIFACTS / "kernel" / "bzImage")
    parser.add_argument("--initrd", type=Path, default=ARTIFACTS / "initramfs.img")
    parser.add_argument("--mkfs-ext4", default="", help="extra mkfs.ext4 options")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per boot stage")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep the image")
    args = parser.parse_args(argv)
    for path in (args.kit, args.rootfs, args.kernel, args.initrd):
        if not path.exists():
            sys.exit(f"{path} is missing: run 'make all' and 'make bootloader' first")

    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = args.keep
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mixos-disk-")))
        image = tmp / "disk.img"
        partition(image)
        with attached(image) as dev:
            esp_dev, root_dev = dev[layout.ESP], dev[layout.ROOT]
            sh("mkfs.vfat", "-n", layout.FS_LABELS[layout.ESP], esp_dev)
            sh("mkfs.ext4", "-q", "-L", layout.FS_LABELS[layout.ROOT],
               *shlex.split(args.mkfs_ext4), root_dev)
            features = ext4_features(root_dev)
            with mounted(root_dev, tmp / "root") as root:
                populate(root, args.rootfs, args.kernel, args.initrd)
            # The ESP is filled with mtools, from a directory install() treats as
            # its mount point: the build hosts' kernel has no vfat driver.
            esp = tmp / "esp"
            esp.mkdir(exist_ok=True)
            bootloader.install(dev[0], kit=args.kit, esp_mount=esp)
            sh("mcopy", "-s", "-o", "-i", esp_dev, esp / "EFI", "::/")
            print(sh("mdir", "-i", esp_dev, "::/" + str(Path(layout.EFI_LOADER).parent),
                     capture=True))
        boots: dict[str, dict[str, object]] = {}
        ok = True
        for name, uefi, platform in (("seabios", False, "pc"), ("ovmf", True, "efi")):
            set_oneshot(image, tmp, "pending")
            print(f"booting with {name}")
            result = boot(image, uefi=uefi, log=tmp / f"{name}.log", timeout=args.timeout)
            result["grubenv_after"] = set_oneshot(image, tmp, None).get("oneshot")
            ok = ok and result["ok"] is True and result["grubenv_after"] == f"seen-by-{platform}"
            boots[name] = result
        print(json.dumps({"ext4_features": features,
                          "core_img": (args.kit / "core.img").stat().st_size,
                          "bootx64_efi": (args.kit / "BOOTX64.EFI").stat().st_size,
                          **boots}, indent=2))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
