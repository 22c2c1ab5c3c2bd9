"""The SDISK: images read from real (tiny) MixOS ISOs, the menu written from them,
`mix sdisk` add/remove/default on a data directory and on a whole SDISK file
built by `mixbuild sdisk`, and what a killed add leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mixboot import grubenv, image, menu, sdisk
from mixboot.iso9660 import IsoImage
from mixbuild.images import iso

SRC = Path(__file__).resolve().parents[2] / "src"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def make_iso(tmp: Path, name: str, version: str = "9.9.9", install: bool = False,
             payload: int = 8192) -> Path:
    d = tmp / f"{name}.in"
    d.mkdir()
    for f, size in (("bzImage", 4096), ("initramfs.img", 2048), ("root.squashfs", payload)):
        (d / f).write_bytes(bytes(range(256)) * (size // 256))
    conf = None
    if install:
        conf = Path(__file__).resolve().parents[2] / "packaging" / "install.yaml"
    ins = iso.IsoInputs(kernel=d / "bzImage", initrd=d / "initramfs.img",
                        squashfs=d / "root.squashfs", version=version, install_config=conf)
    return iso.build(ins, tmp / name)


@pytest.fixture(scope="module")
def isos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("isos")
    return {"live": make_iso(tmp, "mixos-9.9.9.iso"),
            "old": make_iso(tmp, "mixos-9.9.8.iso", version="9.9.8"),
            "installer": make_iso(tmp, "mixos-9.9.9-autoinstall.iso", install=True)}


@pytest.fixture
def data(tmp_path: Path) -> sdisk.Sdisk:
    (tmp_path / "images").mkdir()
    return sdisk.Sdisk(tmp_path)


def mix(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "mix", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_iso_reader_finds_files_by_their_rock_ridge_names(isos: dict[str, Path]) -> None:
    with IsoImage.open(isos["live"]) as img:
        assert img.volume.label == "MIXOS"
        names = {r.name for r in img.listdir("/")}
        assert {"boot", "live", "mixos-image.json"} <= names
        assert img.lookup("/live/root.squashfs").size == 8192
        assert b"menuentry" in img.read("/boot/grub/grub.cfg")


def test_image_says_what_it_is(isos: dict[str, Path]) -> None:
    live = image.read_iso(isos["live"])
    assert (live.version, live.variant, live.install) == ("9.9.9", "live", "")
    assert live.build_date.endswith("Z") and live.kernel == "/boot/vmlinuz"
    assert live.hardening == iso.hardening_cmdline()
    inst = image.read_iso(isos["installer"])
    assert inst.variant == "installer" and inst.install == iso.INSTALL_CONFIG_PATH
    assert "installer" in inst.title


def test_a_file_that_is_not_a_mixos_image_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 70000)
    with pytest.raises(image.ImageError, match="not an ISO 9660 image"):
        image.read_iso(junk)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "hello.txt").write_text("hi\n")
    other = tmp_path / "other.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-r", "-o", str(other), str(plain)],
                   check=True, capture_output=True)
    with pytest.raises(image.ImageError, match="without /mixos-image.json"):
        image.read_iso(other)


def test_add_copies_the_image_and_writes_its_menu_entries(data: sdisk.Sdisk,
                                                         isos: dict[str, Path]) -> None:
    data.add(isos["live"])
    data.add(isos["installer"])
    assert data.files() == ["mixos-9.9.9-autoinstall.iso", "mixos-9.9.9.iso"]
    assert data.default() == "mixos-9.9.9.iso"  # the first one added
    cfg = (data.grub_dir / "grub.cfg").read_text()
    for f in data.files():
        assert f"loopback loop /images/{f}" in cfg
        for entry in ("normal", "vram", "rescue"):
            has = f'--id "{menu.image_entry_id(f, entry)}"' in cfg
            # an installer needs its medium: no VRAM entry
            assert has == (entry != "vram" or "autoinstall" not in f)
    assert "mixos.image=/images/mixos-9.9.9.iso" in cfg
    assert "linux16 (loop)/boot/vmlinuz" in cfg and "initrd (loop)/boot/initramfs.img" in cfg
    assert 'set mixos_default="mixos-9.9.9.iso"' in cfg and "load_env" in cfg
    lines = [ln for ln in cfg.splitlines() if ln.strip().startswith("linux ")]
    installer = [ln for ln in lines if "autoinstall.iso" in ln]
    assert sum("mixos.install=/install.yaml" in ln for ln in installer) == 1  # normal only
    assert sum("VRAM=${mixos_vram}" in ln for ln in lines) == 2  # the normal entries
    assert grubenv.load(data.grub_dir / "grubenv")[menu.DEFAULT_VAR] == "mixos-9.9.9.iso"


def test_add_refuses_what_is_not_an_image_or_already_there(data: sdisk.Sdisk,
                                                           isos: dict[str, Path],
                                                           tmp_path: Path) -> None:
    data.add(isos["live"])
    before = (data.grub_dir / "grub.cfg").read_text()
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"x" * 100000)
    with pytest.raises(sdisk.SdiskError, match="not a MixOS image"):
        data.add(junk)
    with pytest.raises(sdisk.SdiskError, match="already carries"):
        data.add(isos["live"])
    with pytest.raises(sdisk.SdiskError, match="image name"):
        data.add(isos["live"], "../escape.iso")
    assert data.files() == ["mixos-9.9.9.iso"]
    assert (data.grub_dir / "grub.cfg").read_text() == before


@root_only
def test_add_refuses_an_image_that_does_not_fit(tmp_path: Path, isos: dict[str, Path]) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        (small / "images").mkdir()
        sd = sdisk.Sdisk(small)
        big = make_iso(tmp_path, "big.iso", payload=2 << 20)
        with pytest.raises(sdisk.SdiskError, match="MiB free"):
            sd.add(big)
        assert list((small / "images").iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_what_a_killed_add_leaves_is_never_in_the_menu_and_is_cleaned(
        data: sdisk.Sdisk, isos: dict[str, Path]) -> None:
    data.add(isos["live"])
    # A killed add leaves its hidden temporary file, half written.
    partial = data.images_dir / f"{sdisk.PARTIAL_PREFIX}mixos-9.9.8.iso"
    partial.write_bytes(isos["old"].read_bytes()[:50000])
    assert data.files() == ["mixos-9.9.9.iso"]
    data.write_menu()
    assert "9.9.8" not in (data.grub_dir / "grub.cfg").read_text()
    data.add(isos["old"])
    assert not partial.exists() and data.files() == ["mixos-9.9.8.iso", "mixos-9.9.9.iso"]


def test_remove_refuses_the_running_and_the_last_image(data: sdisk.Sdisk,
                                                       isos: dict[str, Path]) -> None:
    data.add(isos["live"])
    with pytest.raises(sdisk.SdiskError, match="last image"):
        data.remove("mixos-9.9.9.iso")
    data.add(isos["old"])
    with pytest.raises(sdisk.SdiskError, match="runs from"):
        data.remove("mixos-9.9.9.iso", running="mixos-9.9.9.iso")
    with pytest.raises(sdisk.SdiskError, match="no image"):
        data.remove("nope.iso")
    data.remove("mixos-9.9.9.iso", running="mixos-9.9.8.iso")  # the default goes
    assert data.files() == ["mixos-9.9.8.iso"] and data.default() == "mixos-9.9.8.iso"
    cfg = (data.grub_dir / "grub.cfg").read_text()
    assert "mixos-9.9.9.iso" not in cfg and 'mixos_default="mixos-9.9.8.iso"' in cfg


def test_default_is_kept_in_grubenv_and_the_menu(data: sdisk.Sdisk,
                                                 isos: dict[str, Path]) -> None:
    data.add(isos["live"])
    data.add(isos["old"])
    data.set_default("mixos-9.9.8.iso")
    assert data.default() == "mixos-9.9.8.iso"
    assert 'set mixos_default="mixos-9.9.8.iso"' in (data.grub_dir / "grub.cfg").read_text()
    with pytest.raises(sdisk.SdiskError, match="no image"):
        data.set_default("mixos-1.iso")


def test_listing_reports_versions_hashes_default_and_running(data: sdisk.Sdisk,
                                                             isos: dict[str, Path]) -> None:
    data.add(isos["live"])
    data.add(isos["installer"])
    rows = {r["name"]: r for r in sdisk.listing(data, running="mixos-9.9.9.iso")}
    live = rows["mixos-9.9.9.iso"]
    assert live["default"] and live["running"] and live["variant"] == "live"
    assert live["sha256"] == sdisk.sha256(isos["live"])
    assert rows["mixos-9.9.9-autoinstall.iso"]["variant"] == "installer"


@root_only
def test_mixbuild_sdisk_and_mix_sdisk_on_the_disk_file(tmp_path: Path,
                                                       isos: dict[str, Path]) -> None:
    from mixbuild.images import bootloader
    from mixbuild.images import sdisk as stage

    bootloader.build()  # the kit (cached in artifacts/grub)
    disk = stage.build([isos["live"], isos["installer"]], tmp_path / "t.sdisk")
    listed = json.loads(mix("sdisk", "list", "--disk", str(disk), "--json").stdout)
    names = [i["name"] for i in listed["images"]]
    assert names == ["mixos-9.9.9-autoinstall.iso", "mixos-9.9.9.iso"]
    assert [i["name"] for i in listed["images"] if i["default"]] == ["mixos-9.9.9.iso"]
    mix("sdisk", "add", "--disk", str(disk), str(isos["old"]), "--default")
    mix("sdisk", "remove", "--disk", str(disk), "mixos-9.9.9-autoinstall.iso")
    bad = mix("sdisk", "remove", "--disk", str(disk), "nope.iso", check=False)
    assert bad.returncode == 9 and "no image 'nope.iso'" in bad.stderr
    listed = json.loads(mix("sdisk", "list", "--disk", str(disk), "--json").stdout)
    assert [(i["name"], i["default"]) for i in listed["images"]] == \
        [("mixos-9.9.8.iso", True), ("mixos-9.9.9.iso", False)]
    # GRUB's images are in place: boot code in sector 0, core.img in partition 1.
    assert disk.read_bytes()[510:512] == b"\x55\xaa"
    notdisk = mix("sdisk", "list", "--disk", str(isos["live"]), check=False)
    assert notdisk.returncode == 1 and "not an SDISK" in notdisk.stderr


def test_mix_sdisk_without_an_sdisk_boot_says_to_name_one() -> None:
    if sdisk.boot_env().get("MIXOS_SDISK"):
        pytest.skip("this system booted from an SDISK")
    proc = mix("sdisk", "list", check=False)
    assert proc.returncode == 1 and "--disk" in proc.stderr


def test_a_qcow2_sdisk_is_named_as_such(tmp_path: Path) -> None:
    img = tmp_path / "x.sdisk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
    with pytest.raises(sdisk.SdiskError, match="qcow2 image.*qemu-nbd"):
        sdisk.data_partition_span(str(img))


def test_a_grub_password_guards_editing_and_rescue_on_the_sdisk(data: sdisk.Sdisk,
                                                                isos: dict[str, Path]) -> None:
    data.add(isos["live"])
    hashed = "grub.pbkdf2.sha512.1000." + "AB" * 32 + "." + "CD" * 64
    data.set_password_hash(hashed)
    cfg_path = data.grub_dir / "grub.cfg"
    cfg = cfg_path.read_text()
    assert f"password_pbkdf2 root {hashed}" in cfg and 'set superusers="root"' in cfg
    assert (cfg_path.stat().st_mode & 0o777) == 0o600
    assert ((data.grub_dir / "password").stat().st_mode & 0o777) == 0o600
    heads = [ln for ln in cfg.splitlines() if ln.startswith("menuentry")]
    assert sum("--unrestricted" in ln for ln in heads) == 2  # normal, VRAM: not rescue
    assert not any("--unrestricted" in ln for ln in heads if "rescue" in ln)
    assert sum("mixos.locked" in ln for ln in cfg.splitlines()
               if ln.strip().startswith("linux ")) == 2
    data.add(isos["old"])  # a change keeps it
    assert "password_pbkdf2" in cfg_path.read_text()
    with pytest.raises(sdisk.SdiskError, match="grub-mkpasswd-pbkdf2"):
        data.set_password_hash("secret")
    data.set_password_hash("")
    assert "password_pbkdf2" not in cfg_path.read_text()
    assert (cfg_path.stat().st_mode & 0o777) == 0o644
