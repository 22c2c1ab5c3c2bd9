"""`mix viso`: look at MixOS images and boot them in QEMU (docs/mix.md).

    mix viso info FILE        what the image is: format, sizes, MixOS version,
                              kernels, firmware it boots under, sha256
    mix viso list [DIR]       the images in ROOT/var/lib/mixos/images or DIR
    mix viso boot FILE [...]  run (or --print) the QEMU command line for it

The image readers and the QEMU command line are mixboot's (package mixos-boot),
imported only when a viso command runs, so that mix works without that package.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mix.cli import command
from mix.errors import NotFoundError, PackageError, UsageError

if TYPE_CHECKING:
    from mixboot.imageinfo import ImageInfo
    from mixboot.qemu import Machine

DEFAULT_MEMORY_MIB = 256
# VRAM=auto (the ISO's default entry) copies the system into RAM from 1 GiB of
# guest memory up (docs/boot.md).
VRAM_MEMORY_MIB = 1024
KINDS = {"viso": "VISO (installed MixOS disk)", "iso": "ISO (live/installer)",
         "sdisk": "SDISK (selection disk)"}


def _path(text: str) -> Path:
    # "~/..." reaches mix unexpanded from make (a quoted SSH_KEY=~/...) and some shells.
    return Path(text).expanduser()


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="viso_command", metavar="ACTION", required=True)
    p = sub.add_parser("info", parents=[common], help="format, sizes, MixOS version, kernels, "
                       "firmware and sha256 of an image file")
    p.add_argument("file", metavar="FILE", type=_path,
                   help="a VISO, ISO or SDISK file (qcow2 or raw), or a disk device")
    p = sub.add_parser("list", parents=[common],
                       help="the images in ROOT/var/lib/mixos/images or DIR")
    p.add_argument("dir", metavar="DIR", type=_path, nargs="?",
                   help="where the images are (default: ROOT/var/lib/mixos/images)")
    p = sub.add_parser("boot", parents=[common], help="boot an image (VISO, ISO or SDISK) in "
                       "QEMU, or --print the command line")
    p.add_argument("file", metavar="FILE", type=_path,
                   help="the image to boot: a VISO, ISO or SDISK file")
    p.add_argument("--memory", metavar="MIB", type=int, help=f"guest memory in MiB (default "
                   f"{DEFAULT_MEMORY_MIB}; {VRAM_MEMORY_MIB} with --vram)")
    p.add_argument("--uefi", action="store_true", help="boot with OVMF instead of SeaBIOS")
    p.add_argument("--vram", action="store_true", help=f"at least {VRAM_MEMORY_MIB} MiB, so "
                   "that the system can run from RAM (see the note it prints)")
    p.add_argument("--ssh-key", metavar="FILE", type=_path, help="authorize this public key "
                   "for root through a NoCloud seed and forward a local port to SSH")
    p.add_argument("--snapshot", action="store_true", help="a disk image is not changed: "
                   "writes go to a temporary file")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto: KVM where a probe boot proves it works, else TCG")
    p.add_argument("--print", action="store_true", help="print the command line, run nothing")


def _mixboot() -> ModuleType:
    """mixboot's image reader (and QEMU command line), or an error naming the
    package that brings them (also when a mixos-boot older than `mix viso` is
    installed)."""
    from mix.session import require_mixboot

    return require_mixboot("qemu", "imageinfo")


def _inspect(path: Path, with_sha256: bool) -> ImageInfo:
    _mixboot()
    from mixboot.image import ImageError
    from mixboot.imageinfo import inspect

    try:
        return inspect(path, with_sha256=with_sha256)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except ImageError as e:
        raise PackageError(str(e), hint="mix viso reads MixOS VISO, ISO and SDISK images "
                           "(qcow2 or raw)") from None


def _size(n: int) -> str:
    from mix.session import human_size  # (not at import: cli imports this module early)

    return human_size(n)


def _print_info(info: ImageInfo) -> None:
    fmt = info.format
    if "qcow2_version" in info.details:
        fmt += (f" (version {info.details['qcow2_version']}, "
                f"{int(info.details['qcow2_cluster_size']) // 1024} KiB clusters)")
    if "backing_file" in info.details:
        fmt += f", backing file {info.details['backing_file']}"
    rows = [("kind", KINDS[info.kind]), ("format", fmt),
            ("size", (f"{_size(info.virtual_size)} virtual, {_size(info.file_size)} file, "
                     f"{_size(info.disk_usage)} on disk")),
            ("version", f"{info.version or '?'}" + (f" ({info.name})" if info.name else "")),
            ("kernels", ", ".join(info.kernels) or "none found")]
    firmware = [f"{fw.upper()}: {info.details.get(fw, 'yes')}" for fw in info.firmware]
    rows.append(("firmware", "\n            ".join(firmware) or "none found (not bootable)"))
    if info.details.get("images"):
        rows.append(("images", info.details["images"]))
    rows.append(("sha256", info.sha256))
    print(info.path)
    for key, value in rows:
        print(f"  {key + ':':10}{value}")


def viso_info(args: argparse.Namespace) -> int:
    from mix.session import emit_json

    info = _inspect(args.file, with_sha256=True)
    if args.json:
        emit_json(info.json())
    else:
        _print_info(info)
    return 0


def viso_list(args: argparse.Namespace) -> int:
    from mix.session import emit_json

    _mixboot()
    from mixboot.imageinfo import IMAGE_DIR, list_images

    directory = args.dir or Path(args.root) / IMAGE_DIR.relative_to("/")
    if args.dir is not None and not args.dir.is_dir():
        raise NotFoundError(f"{args.dir}: no such directory")
    infos, problems = list_images(directory)
    for problem in problems:
        print(f"mix: warning: {problem}", file=sys.stderr)
    if args.json:
        emit_json([i.json() for i in infos])
        return 0
    if not infos:
        print(f"no MixOS images in {directory}")
        return 0
    rows = [("NAME", "KIND", "VERSION", "FORMAT", "VIRTUAL", "FILE")]
    rows += [(Path(i.path).name, i.kind, i.version or "?", i.format, _size(i.virtual_size),
              _size(i.file_size)) for i in infos]
    widths = [max(len(r[n]) for r in rows) for n in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def choose_accel(requested: str) -> tuple[str, str]:
    """The accelerator and, when it was not proven by a probe, why it was chosen.

    The VM tests' rule: KVM only where a probe boot proves it works (on some hosts
    KVM guests hang). The probe (mixbuild.vm.qemu.probe_accel) is build tooling
    and boots the build's kernel and initramfs, so it runs only on the build host;
    elsewhere TCG is used unless KVM is asked for (--accel kvm, MIXOS_ACCEL=kvm)."""
    if requested != "auto":
        return requested, ""
    forced = os.environ.get("MIXOS_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return forced, ""
    if forced:
        raise UsageError(f"MIXOS_ACCEL={forced!r}: use 'kvm' or 'tcg'")
    from mixboot.qemu import kvm_usable

    if not kvm_usable():
        return "tcg", "TCG: /dev/kvm is not usable here"
    try:
        from mixbuild.common import ARTIFACTS
        from mixbuild.vm.qemu import probe_accel
    except ImportError:
        return "tcg", ("TCG: KVM is not proven to work here (the KVM probe is part of the "
                       "build tooling); --accel kvm to use it anyway")
    kernel, initrd = ARTIFACTS / "kernel" / "bzImage", ARTIFACTS / "initramfs.img"
    if not (kernel.is_file() and initrd.is_file()):
        return "tcg", (f"TCG: no {kernel} and {initrd} to probe KVM with ('make kernel "
                       "initramfs'); --accel kvm to use it anyway")
    return probe_accel(kernel, initrd), ""


def _seed(key_file: Path) -> Path:
    from mixboot import seed

    try:
        keys = seed.read_public_keys(key_file)
        path = seed.cache_path(keys)
        return path if path.is_file() else seed.make_seed(path, keys)
    except seed.SeedError as e:
        raise UsageError(str(e)) from None


def ssh_command(port: int, key_file: Path | None) -> str:
    # Every fresh VM makes new host keys, and the port changes from run to run:
    # recording them in known_hosts would only produce warnings next time.
    argv = ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    if key_file is not None and key_file.suffix == ".pub" and key_file.with_suffix("").is_file():
        argv += ["-i", str(key_file.with_suffix(""))]
    return shlex.join([*argv, "root@127.0.0.1"])


def machine_for(info: ImageInfo, *, memory_mb: int = DEFAULT_MEMORY_MIB, accel: str = "tcg",
                uefi: bool = False, snapshot: bool = False, seed: Path | None = None,
                ssh_port: int | None = None, serial: str = "mon:stdio") -> Machine:
    """The VM `mix viso boot` runs for the image INFO describes: an ISO as a CD-ROM,
    a VISO or SDISK as the virtio disk it boots from; SEED (a NoCloud seed) as a
    read-only disk; SSH_PORT forwarded to the guest's 22. (The VM tests boot it.)"""
    from mixboot import qemu

    path = Path(info.path).absolute()
    disks = (seed,) if seed is not None else ()
    if info.kind == "iso":
        return qemu.Machine(memory_mb=memory_mb, accel=accel, iso=path, uefi=uefi,
                            disks=disks, ssh_port=ssh_port, serial=serial)
    return qemu.Machine(memory_mb=memory_mb, accel=accel, uefi=uefi, disks=disks,
                        drives=(qemu.Drive(path, info.format, snapshot=snapshot),),
                        ssh_port=ssh_port, serial=serial)


def _check_firmware(path: Path, info: ImageInfo, uefi: bool) -> None:
    wanted = "uefi" if uefi else "bios"
    if wanted in info.firmware:
        return
    if info.kind == "iso":
        lacks = f"its El Torito boot catalog has no image for {'EFI' if uefi else 'x86 BIOS'}"
    else:
        lacks = ("no EFI/BOOT/BOOTX64.EFI on an EFI system partition" if uefi
                 else "no GRUB in the MBR and the BIOS boot partition")
    other = ("; without --uefi it boots under BIOS" if "bios" in info.firmware
             else "; with --uefi it boots under UEFI" if "uefi" in info.firmware else "")
    raise PackageError(f"{path} does not boot under {wanted.upper()}: {lacks}{other}")


def viso_boot(args: argparse.Namespace) -> int:
    info = _inspect(args.file, with_sha256=False)
    from mixboot import qemu

    _check_firmware(args.file, info, args.uefi)
    if args.uefi:
        try:
            qemu.ovmf_firmware()
        except FileNotFoundError as e:
            raise NotFoundError(str(e)) from None
    memory = args.memory or (VRAM_MEMORY_MIB if args.vram else DEFAULT_MEMORY_MIB)
    notes = []
    if args.vram:
        memory = max(memory, VRAM_MEMORY_MIB)
        # The VISO and the SDISK boot through their own GRUB, whose normal entries
        # pass VRAM=${mixos_vram} from the image's grubenv: choosing VRAM from here
        # would mean writing into the image's file system, which this never does.
        notes.append("VRAM: the boot menu's VRAM entry (Esc at boot) runs the system from "
                     "RAM; the ISO's and SDISK's default entries (VRAM=auto) do so from "
                     f"{VRAM_MEMORY_MIB} MiB; on a VISO or SDISK, 'mix vram enable' inside "
                     "it keeps VRAM for the next boots (GRUB's mixos_vram).")
    accel, why = choose_accel(args.accel)
    if why:
        notes.append(why)
    seed_path = _seed(args.ssh_key) if args.ssh_key is not None else None
    port = qemu.free_port() if args.ssh_key is not None else None
    argv = qemu.command(machine_for(info, memory_mb=memory, accel=accel, uefi=args.uefi,
                                    snapshot=args.snapshot, seed=seed_path, ssh_port=port))
    if port is not None:
        notes.append(f"once it has booted, log in as root: {ssh_command(port, args.ssh_key)}")
    else:
        notes.append("no --ssh-key: MixOS has no password logins, so the console's login "
                     "prompt lets nobody in; give a public key with --ssh-key to log in "
                     "over SSH")
    if args.print:
        for note in notes:
            print(f"mix: {note}", file=sys.stderr)
        print(shlex.join(argv))
        return 0
    if shutil.which(argv[0]) is None:
        raise NotFoundError(f"{argv[0]} not found", hint="install QEMU (Debian: qemu-system-x86)")
    notes.append("the serial console is this terminal; Ctrl-A X quits QEMU")
    for note in notes:
        print(f"mix: {note}", file=sys.stderr)
    sys.stderr.flush()
    os.execvp(argv[0], argv)
    return 1  # not reached


ACTIONS = {"info": viso_info, "list": viso_list, "boot": viso_boot}


@command("viso")
def cmd_viso(args: argparse.Namespace) -> int:
    return ACTIONS[args.viso_command](args)
