"""The ISO stage: GRUB menu contents and a real (tiny) hybrid image built twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mixbuild.images import iso


def inputs(tmp_path: Path, label: str = "MIXOS") -> iso.IsoInputs:
    for name, size in (("bzImage", 4096), ("initramfs.img", 2048), ("root.squashfs", 8192)):
        (tmp_path / name).write_bytes(bytes(range(256)) * (size // 256))
    return iso.IsoInputs(kernel=tmp_path / "bzImage", initrd=tmp_path / "initramfs.img",
                         squashfs=tmp_path / "root.squashfs", version="9.9.9", label=label)


def test_menu_has_normal_vram_and_rescue_entries_on_serial_and_screen(tmp_path: Path) -> None:
    cfg = iso.grub_cfg(inputs(tmp_path))
    assert "terminal_output serial console" in cfg
    assert "serial --unit=0 --speed=115200" in cfg
    linux = [line.split(None, 2)[2] for line in cfg.splitlines()
             if line.strip().startswith("linux ")]
    linux16 = [line.split(None, 2)[2] for line in cfg.splitlines()
               if line.strip().startswith("linux16 ")]
    assert len(linux) == 3 and linux16 == linux  # BIOS and UEFI boot the same way
    normal, vram, rescue = linux
    for args in linux:
        assert "console=tty0 console=ttyS0,115200" in args
        assert "mixos.root_label=MIXOS" in args
    assert "VRAM=on" in vram and "VRAM=" not in normal and rescue.endswith(" rescue")
    assert " quiet" in normal and " quiet" in vram and " quiet" not in rescue
    assert "set default=normal" in cfg and f"set timeout={iso.MENU_TIMEOUT}" in cfg


def test_hidden_menu_polls_only_terminals_that_report_modifier_keys(tmp_path: Path) -> None:
    # Debian's GRUB turns a hidden zero timeout into 3 s when an input terminal
    # (the serial one) cannot report Shift: the boot would wait 3 s for nothing.
    cfg = iso.grub_cfg(inputs(tmp_path))
    assert "set timeout=0" in cfg and "set timeout_style=hidden" in cfg
    inputs_lines = [line.split()[1:] for line in cfg.splitlines()
                    if line.startswith("terminal_input")]
    assert inputs_lines == [["console"]]
    assert iso.MENU_HINT in cfg  # the one line a person sees says how to open the menu


def test_every_entry_carries_the_hardening_arguments(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("# hardening\nslab_nomerge  init_on_free=1\n")
    monkeypatch.setattr(iso, "CMDLINE_FILE", cmdline)
    cfg = iso.grub_cfg(inputs(tmp_path))
    assert cfg.count("slab_nomerge init_on_free=1") == 6  # 3 entries x (BIOS, UEFI)


def test_hybrid_iso_is_reproducible_and_boots_bios_and_uefi(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    ins = inputs(tmp_path, label="MIXTEST")
    first = iso.build(ins, tmp_path / "a.iso")
    second = iso.build(ins, tmp_path / "b.iso")
    assert first.read_bytes() == second.read_bytes()
    report = subprocess.run(["xorriso", "-indev", str(first), "-report_el_torito", "plain",
                             "-pvd_info"], capture_output=True, text=True, check=True).stdout
    assert "Volume Id    : MIXTEST" in report
    assert " BIOS " in report and " UEFI " in report
    assert "Creation Time: 2026010100000000" in report
    listing = subprocess.run(["xorriso", "-indev", str(first), "-find", "/", "-type", "f"],
                             capture_output=True, text=True, check=True).stdout
    for path in ("/boot/vmlinuz", "/boot/initramfs.img", "/live/root.squashfs",
                 "/boot/grub/grub.cfg"):
        assert f"'{path}'" in listing
    # An MBR boot signature makes the ISO bootable as a disk image too (hybrid).
    assert first.read_bytes()[510:512] == b"\x55\xaa"


def test_missing_input_names_the_make_target(tmp_path: Path) -> None:
    ins = inputs(tmp_path)
    ins.squashfs.unlink()
    with pytest.raises(iso.BuildError, match="make rootfs"):
        iso.build(ins, tmp_path / "x.iso")
