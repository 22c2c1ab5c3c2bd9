"""`mix viso info` and `mix viso list`: MixOS images read without root, loop
devices or qemu-img, from real images (raw GPT + ext4 made by mkfs.ext4 -d,
qcow2 by qemu-img convert with and without -c)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import diskhelpers
import pytest

from mix.cli import main
from mixboot import layout
from mixboot.bootloader import SECTOR, parse_gpt
from mixboot.diskimage import open_image
from mixboot.ext4 import Ext4
from mixboot.image import ImageError
from mixboot.imageinfo import bzimage_version, inspect

pytestmark = pytest.mark.skipif(bool(diskhelpers.tools_missing()),
                                reason=f"needs {diskhelpers.tools_missing()} (make deps)")

KERNELS = ("6.1.90", "6.1.100")


@pytest.fixture(scope="module")
def raw_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return diskhelpers.mixos_disk(tmp_path_factory.mktemp("raw"), "0.3.1", KERNELS)


@pytest.fixture(scope="module")
def images(raw_disk: Path) -> dict[str, Path]:
    d = raw_disk.parent
    return {"raw": raw_disk,
            "qcow2": diskhelpers.to_qcow2(raw_disk, d / "plain.qcow2", compressed=False),
            "qcow2-v2": diskhelpers.to_qcow2(raw_disk, d / "v2.qcow2", compressed=False,
                                            compat="0.10"),
            "compressed": diskhelpers.to_qcow2(raw_disk, d / "mixos.viso", compressed=True)}


@pytest.mark.parametrize("which", ["raw", "qcow2", "qcow2-v2", "compressed"])
def test_info_reads_version_kernels_firmware_and_sizes(images: dict[str, Path],
                                                       which: str) -> None:
    path = images[which]
    info = inspect(path)
    assert info.kind == "viso"
    assert info.format == ("raw" if which == "raw" else "qcow2")
    assert info.version == "0.3.1" and info.name == "MixOS 0.3.1"
    assert info.kernels == ("6.1.100", "6.1.90")  # newest first, natural order
    assert info.firmware == ("bios", "uefi")
    assert info.virtual_size == images["raw"].stat().st_size
    assert info.file_size == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    if which != "raw":
        assert info.details["qcow2_version"] == ("2" if which == "qcow2-v2" else "3")


def compressed_extents(image: Path) -> list[dict[str, int]]:
    """The guest ranges qemu-img itself says are compressed: "compressed": true
    since QEMU 8; before, data that has no host "offset"."""
    mapping = json.loads(subprocess.run(["qemu-img", "map", "--output=json", str(image)],
                                        check=True, capture_output=True, text=True).stdout)
    return [m for m in mapping if m.get("compressed") or (m["data"] and "offset" not in m)]


def test_compressed_qcow2_reads_back_the_raw_disk_byte_for_byte(images: dict[str, Path]) -> None:
    assert compressed_extents(images["compressed"]), "qemu-img wrote no compressed cluster"
    raw = images["raw"].read_bytes()
    disk = open_image(images["compressed"])
    try:
        for offset in range(0, len(raw), 1 << 20):
            assert disk.read(offset, 1 << 20) == raw[offset:offset + (1 << 20)], offset
        # A read across a cluster boundary, not aligned to anything.
        assert disk.read(65536 - 7, 20) == raw[65536 - 7:65536 + 13]
    finally:
        disk.close()


@pytest.mark.parametrize("options", [("-O", "^64bit,^metadata_csum"), ("-b", "4096", "-O", "64bit")],
                         ids=["1k-blocks-32bit", "4k-blocks-64bit"])
def test_ext4_reads_files_through_extents_and_symlinks(tmp_path: Path,
                                                       options: tuple[str, ...]) -> None:
    raw = diskhelpers.mixos_disk(tmp_path, "0.1.0", ("6.1.90",), mkfs_options=options)
    disk = open_image(raw)
    try:
        _, parts = parse_gpt(disk.read, disk.size, str(raw))
        root = next(p for p in parts if p.number == layout.ROOT)
        fs = Ext4(disk, root.first_lba * SECTOR, root.sectors * SECTOR, "test")
        tree = tmp_path / "root"
        assert fs.read_file("/boot/6.1.90/vmlinuz") == (tree / "boot/6.1.90/vmlinuz").read_bytes()
        # /etc/os-release is a relative symlink, as base-files makes it.
        assert fs.read_file("/etc/os-release") == (tree / "usr/lib/os-release").read_bytes()
        htree = subprocess.run(["debugfs", "-R", "htree /etc", str(tmp_path / "root.ext4")],
                               capture_output=True, text=True, check=True).stdout
        assert "Root node dump" in htree  # a hashed directory, read linearly here
        names = {e.name for e in fs.listdir("/etc") or []}
        assert len(names) == 301 and "file-with-a-long-name-0299.conf" in names
        assert fs.read_file("/etc/missing") is None and fs.listdir("/nope") is None
    finally:
        disk.close()


def test_info_reads_an_overlay_through_its_backing_file(images: dict[str, Path],
                                                        tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(images["compressed"]), str(overlay)], check=True)
    info = inspect(overlay)
    assert info.version == "0.3.1" and info.details["backing_file"] == str(images["compressed"])


def test_a_disk_without_an_efi_loader_boots_only_under_bios(tmp_path: Path) -> None:
    info = inspect(diskhelpers.mixos_disk(tmp_path, uefi=False))
    assert info.firmware == ("bios",)
    assert "uefi" not in info.details


def test_a_disk_without_grub_boots_only_under_uefi(tmp_path: Path) -> None:
    assert inspect(diskhelpers.mixos_disk(tmp_path, bios=False)).firmware == ("uefi",)


def test_iso_info_reads_the_image_json_and_the_kernel_header(tmp_path: Path) -> None:
    info = inspect(diskhelpers.mixos_iso(tmp_path, "0.4.0", "6.1.111"))
    assert (info.kind, info.format, info.version) == ("iso", "iso", "0.4.0")
    assert info.name.startswith("MixOS 0.4.0") and info.details["variant"] == "live"
    assert info.kernels == ("6.1.111",) and info.details["volume_label"] == "MIXOS"
    assert info.firmware == ("bios", "uefi")  # grub-mkrescue's El Torito boot catalog


def test_an_iso_from_before_the_image_json_is_read_by_its_release_file(tmp_path: Path) -> None:
    iso = diskhelpers.plain_iso(tmp_path, {"mixos-release": "MixOS 0.0.9\n",
                                           "boot/vmlinuz": "not a kernel"})
    info = inspect(iso)
    assert (info.kind, info.version, info.kernels) == ("iso", "0.0.9", ())
    assert info.firmware == ()  # no boot catalog


def test_an_iso_of_another_system_is_not_a_mixos_image(tmp_path: Path) -> None:
    iso = diskhelpers.plain_iso(tmp_path, {"README": "another system\n"})
    with pytest.raises(ImageError, match="not a MixOS image: an ISO 9660 image without"):
        inspect(iso)


def test_bzimage_version_is_empty_for_anything_else() -> None:
    assert bzimage_version(bytes(4096)) == ""
    assert bzimage_version(diskhelpers.bzimage_header("6.1.5-mixos")) == "6.1.5-mixos"


def run_mix(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mix_viso_info_prints_facts_and_json(images: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_mix(capsys, "viso", "info", str(images["compressed"]))
    assert code == 0
    assert "VISO" in out and "0.3.1" in out and "6.1.100, 6.1.90" in out
    assert "BIOS: GRUB" in out and "UEFI: EFI/BOOT/BOOTX64.EFI" in out
    code, out, _ = run_mix(capsys, "viso", "info", "--json", str(images["compressed"]))
    data = json.loads(out)
    assert code == 0 and data["version"] == "0.3.1" and data["firmware"] == ["bios", "uefi"]
    assert data["virtual_size"] > data["file_size"]


def test_a_file_that_is_not_an_image_is_refused_with_exit_8(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 10000)
    code, _, err = run_mix(capsys, "viso", "info", str(text))
    assert code == 8
    assert f"{text}: not a MixOS image: no GPT" in err


def test_another_systems_disk_is_not_a_mixos_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a MixOS image: its root file system has ID=debian"):
        inspect(diskhelpers.mixos_disk(tmp_path, os_id="debian"))


def test_a_missing_file_exits_9(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_mix(capsys, "viso", "info", str(tmp_path / "none.viso"))
    assert code == 9 and "none.viso: no such file" in err


def test_a_truncated_qcow2_is_reported_as_truncated(images: dict[str, Path],
                                                   tmp_path: Path) -> None:
    cut = tmp_path / "cut.viso"
    cut.write_bytes(images["compressed"].read_bytes()[:200_000])
    with pytest.raises(ImageError, match="past the end of the .*truncated"):
        inspect(cut)


def test_a_damaged_qcow2_header_is_refused(images: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(images["compressed"].read_bytes())
    data[20:24] = (40).to_bytes(4, "big")  # cluster_bits
    bad = tmp_path / "bad.viso"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="cluster_bits 40 is outside"):
        inspect(bad)


def test_a_damaged_compressed_cluster_is_refused(images: dict[str, Path],
                                                tmp_path: Path) -> None:
    # The first compressed cluster: the GPT's (every read of the image starts there).
    assert compressed_extents(images["compressed"])[0]["start"] == 0
    data = bytearray(images["compressed"].read_bytes())
    l1_offset = int.from_bytes(data[40:48], "big")
    l2_offset = int.from_bytes(data[l1_offset:l1_offset + 8], "big") & 0x00FF_FFFF_FFFF_FE00
    entry = int.from_bytes(data[l2_offset:l2_offset + 8], "big")
    host = entry & ((1 << (62 - (16 - 8))) - 1)  # 64 KiB clusters
    data[host:host + 64] = bytes(range(64))
    bad = tmp_path / "bad.viso"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="compressed cluster .* damaged"):
        inspect(bad)


def test_a_damaged_partition_table_is_refused(images: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(images["raw"].read_bytes())
    data[512 + 40] ^= 0xFF  # the GPT header's first usable LBA, covered by its CRC
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="GPT header is corrupt"):
        inspect(bad)


def test_list_shows_each_image_and_warns_about_other_files(
        images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mixos-0.3.1.viso").symlink_to(images["compressed"])
    (tmp_path / "raw.img").symlink_to(images["raw"])
    (tmp_path / "junk.viso").write_bytes(b"x" * 4096)
    (tmp_path / "initramfs.img").write_bytes(b"x" * 4096)  # .img: not always a disk
    (tmp_path / "readme.txt").write_text("not looked at\n")
    code, out, err = run_mix(capsys, "viso", "list", str(tmp_path))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "KIND", "VERSION", "FORMAT", "VIRTUAL",
                                             "FILE"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["mixos-0.3.1.viso", "viso", "0.3.1", "qcow2"], ["raw.img", "viso", "0.3.1", "raw"]]
    assert "junk.viso: not a MixOS image" in err
    assert "initramfs" not in err and "readme" not in err


def test_list_of_a_missing_directory_exits_9(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_mix(capsys, "viso", "list", str(tmp_path / "nope"))
    assert code == 9 and "no such directory" in err


def test_list_without_dir_looks_under_root(tmp_path: Path, images: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_mix(capsys, "--root", str(tmp_path), "viso", "list")
    assert code == 0 and out.strip() == f"no MixOS images in {tmp_path}/var/lib/mixos/images"
    store = tmp_path / "var/lib/mixos/images"
    store.mkdir(parents=True)
    (store / "a.viso").symlink_to(images["compressed"])
    code, out, _ = run_mix(capsys, "--root", str(tmp_path), "viso", "list", "--json")
    assert code == 0 and [Path(i["path"]).name for i in json.loads(out)] == ["a.viso"]


@pytest.mark.parametrize("absent", ["mixboot", "mixboot.imageinfo"],
                         ids=["no-mixos-boot", "older-mixos-boot"])
def test_without_mixos_boot_mix_viso_names_the_package(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        absent: str) -> None:
    # As if mixos-boot (or this module of it) were not installed: importing it fails.
    for name in [m for m in sys.modules if m == absent or m.startswith(absent + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    code, _, err = run_mix(capsys, "viso", "info", str(tmp_path / "x.viso"))
    assert code == 9
    assert "package mixos-boot" in err and "mix install mixos-boot" in err


def test_mix_does_not_import_mixboot_for_other_commands() -> None:
    probe = ("import sys; from mix.cli import build_parser; build_parser().parse_args(['viso', "
             "'list']); print('mixboot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "False"


def test_an_sdisk_is_recognized_by_its_data_partition_and_lists_its_images(
        images: dict[str, Path], tmp_path: Path) -> None:
    iso = diskhelpers.mixos_iso(tmp_path / "iso")
    disk = diskhelpers.sdisk(tmp_path, {"mixos-0.1.0.iso": iso, "b.iso": iso})
    info = inspect(disk)
    assert (info.kind, info.format) == ("sdisk", "raw")
    assert info.details["images"] == "b.iso mixos-0.1.0.iso"
    assert info.firmware == ("bios", "uefi")


def root_fs_offset(raw: Path) -> int:
    disk = open_image(raw)
    try:
        _, parts = parse_gpt(disk.read, disk.size, str(raw))
        return next(p for p in parts if p.number == layout.ROOT).first_lba * SECTOR
    finally:
        disk.close()


def test_an_extent_header_claiming_more_entries_than_fit_is_damage(
        images: dict[str, Path], tmp_path: Path) -> None:
    raw = images["raw"]
    start = root_fs_offset(raw)
    disk = open_image(raw)
    try:
        _, parts = parse_gpt(disk.read, disk.size, str(raw))
        root = next(p for p in parts if p.number == layout.ROOT)
        fs = Ext4(disk, start, root.sectors * SECTOR, "test")
        etc = fs.lookup("/etc")
        assert etc is not None
        at = start + fs.inode_offset(etc.number)
    finally:
        disk.close()
    data = bytearray(raw.read_bytes())
    assert int.from_bytes(data[at + 0x28:at + 0x2A], "little") == 0xF30A  # the header
    data[at + 0x2A:at + 0x2C] = (5).to_bytes(2, "little")  # 5 entries; 4 fit in an inode
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="damaged extent tree"):
        inspect(bad)


@pytest.mark.parametrize("region", ["gpt", "root-fs-metadata", "esp", "qcow2-metadata"])
def test_random_damage_gives_an_image_error_or_the_facts_never_a_traceback(
        images: dict[str, Path], tmp_path: Path, region: str) -> None:
    import random

    source = images["compressed"] if region == "qcow2-metadata" else images["raw"]
    base, span = {"gpt": (0, 20 << 10),
                  "root-fs-metadata": (root_fs_offset(images["raw"]), 300 << 10),
                  "esp": ((1 + layout.BIOS_BOOT_MIB) << 20, 64 << 10),
                  "qcow2-metadata": (0, 400 << 10)}[region]
    rng = random.Random(region)  # the same damage every run
    original = source.read_bytes()
    bad = tmp_path / f"bad{source.suffix}"
    for _ in range(40):
        data = bytearray(original)
        for _ in range(rng.randint(1, 50)):
            data[base + rng.randrange(min(span, len(data) - base))] = rng.randrange(256)
        bad.write_bytes(bytes(data))
        try:
            inspect(bad, with_sha256=False)
        except ImageError:
            pass


def test_with_json_an_error_is_a_document_too(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 10000)
    code, out, _ = run_mix(capsys, "--json", "viso", "info", str(text))
    doc = json.loads(out)
    assert code == 8 and doc["exit"] == 8 and "not a MixOS image" in doc["error"]["message"]
