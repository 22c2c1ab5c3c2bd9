"""`mix viso boot --print`: the QEMU command lines for the ISO, a VISO (BIOS and
UEFI) and an SSH key handed in by a NoCloud seed, and the seed read back."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import diskhelpers
import pytest

from mix.cli import main
from mixboot import qemu, seed
from mixcloud import datasource, userdata

pytestmark = pytest.mark.skipif(bool(diskhelpers.tools_missing()),
                                reason=f"needs {diskhelpers.tools_missing()} (make deps)")


@pytest.fixture(scope="module")
def viso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("viso")
    return diskhelpers.to_qcow2(diskhelpers.mixos_disk(base), base / "mixos-0.1.0.viso",
                                compressed=True)


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return diskhelpers.mixos_iso(tmp_path_factory.mktemp("iso"))


@pytest.fixture()
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@host",
                    "-f", str(tmp_path / "id_ed25519")], check=True)
    return tmp_path / "id_ed25519.pub"


def boot_print(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["viso", "boot", "--print", "--accel", "tcg", *argv])
    out, err = capsys.readouterr()
    return code, shlex.split(out) if code == 0 else [], err


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_iso_boots_from_a_cdrom(iso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, argv, _ = boot_print(capsys, str(iso))
    assert code == 0 and argv[0] == qemu.QEMU
    assert option(argv, "-drive") == [f"file={iso},media=cdrom,if=ide,index=2,readonly=on"]
    assert option(argv, "-boot") == ["order=d"] and option(argv, "-m") == ["256M"]
    assert option(argv, "-serial") == ["mon:stdio"] and "-kernel" not in argv


def test_the_viso_boots_from_its_disk(viso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, argv, _ = boot_print(capsys, str(viso), "--memory", "512")
    assert code == 0
    assert option(argv, "-drive") == [
        f"file={viso},if=virtio,format=qcow2,cache=writeback,aio=threads"]
    assert option(argv, "-m") == ["512M"] and option(argv, "-machine") == ["q35,accel=tcg"]
    assert "-bios" not in argv  # SeaBIOS, QEMU's default


def test_snapshot_leaves_the_image_as_built(viso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, argv, _ = boot_print(capsys, str(viso), "--snapshot")
    assert option(argv, "-drive")[0].endswith(",snapshot=on")


def test_uefi_boots_the_viso_with_ovmf(viso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        ovmf = qemu.ovmf_firmware()
    except FileNotFoundError:
        pytest.skip("no OVMF (Debian's ovmf) on this host")
    code, argv, _ = boot_print(capsys, str(viso), "--uefi")
    assert code == 0 and option(argv, "-bios") == [str(ovmf)]


def test_uefi_is_refused_for_a_disk_without_an_efi_loader(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    disk = diskhelpers.mixos_disk(tmp_path, uefi=False)
    code, _, err = boot_print(capsys, str(disk), "--uefi")
    assert code == 8
    assert "does not boot under UEFI" in err and "without --uefi it boots under BIOS" in err


def test_vram_asks_for_a_gigabyte_and_says_where_vram_is_chosen(
        iso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, argv, err = boot_print(capsys, str(iso), "--vram")
    assert code == 0 and option(argv, "-m") == ["1024M"]
    assert "boot menu" in err and "mix vram enable" in err


def test_ssh_key_attaches_a_seed_and_forwards_a_port(
        viso: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, argv, err = boot_print(capsys, str(viso), "--ssh-key", str(key))
    assert code == 0
    netdev = option(argv, "-netdev")[0]
    port = int(netdev.split("hostfwd=tcp:127.0.0.1:")[1].split("-:22")[0])
    seed_drive = option(argv, "-drive")[1]
    assert seed_drive.endswith(",if=virtio,format=raw,readonly=on")
    seed_image = Path(seed_drive.split(",")[0].removeprefix("file="))
    assert seed_image.is_file() and seed_image.is_relative_to(key.parent / "cache")
    assert (f"ssh -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o LogLevel=ERROR -i {key.with_suffix('')} root@127.0.0.1") in err


def test_the_seed_reads_back_as_mixos_reads_it(tmp_path: Path, key: Path) -> None:
    keys = seed.read_public_keys(key)
    image = seed.make_seed(tmp_path / "seed.img", keys, hostname="box")
    listing = subprocess.run(["mdir", "-i", str(image), "::"], check=True, capture_output=True,
                             text=True).stdout
    assert "Volume in drive : is CIDATA" in listing
    user_data = subprocess.run(["mtype", "-i", str(image), "::user-data"], check=True,
                               capture_output=True, text=True).stdout
    meta_data = subprocess.run(["mtype", "-i", str(image), "::meta-data"], check=True,
                               capture_output=True, text=True).stdout
    # What MixOS's boot step (mixos-cloud) reads of the seed, from what was read back.
    (tmp_path / "user-data").write_text(user_data)
    (tmp_path / "meta-data").write_text(meta_data)
    read = datasource.read_nocloud_dir(tmp_path, "seed.img")
    assert userdata.parse(read.user_data).ssh_authorized_keys == (key.read_text().strip(),)
    assert read.local_hostname == "box"


def test_a_private_key_is_refused_with_its_public_half_named(
        viso: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private = key.with_suffix("")
    code, _, err = boot_print(capsys, str(viso), "--ssh-key", str(private))
    assert code == 2 and f"{private} is a private key; give its public half" in err


def test_a_missing_key_file_says_how_to_make_one(
        viso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = boot_print(capsys, str(viso), "--ssh-key", str(tmp_path / "none.pub"))
    assert code == 2 and "ssh-keygen -t ed25519" in err


def test_booting_a_non_image_is_refused(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "x.viso"
    junk.write_bytes(b"\0" * 100_000)
    code, _, err = boot_print(capsys, str(junk))
    assert code == 8 and "not a MixOS image" in err


def test_accel_auto_honours_mixos_accel(viso: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MIXOS_ACCEL", "kvm")
    assert main(["viso", "boot", "--print", str(viso)]) == 0
    argv = shlex.split(capsys.readouterr().out)
    assert option(argv, "-machine") == ["q35,accel=kvm"] and option(argv, "-cpu") == ["host"]


def test_an_sdisk_boots_from_its_disk(viso: Path, iso: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    disk = diskhelpers.sdisk(tmp_path, {"mixos-0.1.0.iso": iso})
    code, argv, _ = boot_print(capsys, str(disk), "--snapshot")
    assert code == 0
    assert option(argv, "-drive") == [
        f"file={disk},if=virtio,format=raw,cache=writeback,aio=threads,snapshot=on"]


def test_a_key_path_with_a_tilde_is_the_home_directorys(
        viso: Path, key: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(key.parent))  # (make passes SSH_KEY=~/... unexpanded)
    code, argv, err = boot_print(capsys, str(viso), "--ssh-key", f"~/{key.name}")
    assert code == 0 and "hostfwd=tcp:127.0.0.1:" in option(argv, "-netdev")[0]
    assert f"-i {key.with_suffix('')} root@127.0.0.1" in err
