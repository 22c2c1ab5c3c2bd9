"""VRAM: what `mix vram status` reads from the initramfs's boot.env, and where
`mix vram enable|disable` keep the choice (an installed disk's grubenv; never on
the read-only ISO), which the disk menu's normal entries pass on."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixboot import grubenv, kernels, menu, vram

DISK_ENV = {"MIXOS_ROOT": "/dev/vda3", "MIXOS_VRAM_REQUESTED": "auto", "MIXOS_VRAM": "off",
            "MIXOS_VRAM_WHY": "auto: an installed system runs from its disk",
            "MIXOS_VRAM_KB": "0"}
ISO_ENV = {"MIXOS_MEDIUM": "/dev/sr0", "MIXOS_VRAM_REQUESTED": "on", "MIXOS_VRAM": "on",
           "MIXOS_VRAM_WHY": "on: requested", "MIXOS_VRAM_KB": "16850"}


def test_status_reports_the_boot_decision_and_memory() -> None:
    st = vram.status(ISO_ENV)
    assert st["medium"] == "iso" and st["in_effect"] == "on" and st["requested"] == "on"
    assert st["why"] == "on: requested" and st["copied_bytes"] == 16850 * 1024
    assert st["medium_needed"] is False and st["next_boot"] is None
    assert isinstance(st["mem_total"], int) and st["mem_total"] > 0
    sd = vram.status({**ISO_ENV, "MIXOS_SDISK": "/dev/vda3", "MIXOS_VRAM": "off"})
    assert sd["medium"] == "sdisk" and sd["medium_needed"] is True


def test_the_read_only_iso_cannot_keep_a_choice_and_says_how_to_choose() -> None:
    with pytest.raises(vram.VramError, match="read-only ISO.*VRAM=on"):
        vram.persist("on", ISO_ENV)


def test_enable_and_disable_write_the_disk_grubenv(tmp_path: Path) -> None:
    kernels.set_env(tmp_path, mixos_good="6.1.2-r1")
    vram.persist(vram.ON, DISK_ENV, root=tmp_path)
    env = grubenv.load(kernels.env_path(tmp_path))
    assert env[menu.VRAM_VAR] == "on" and env["mixos_good"] == "6.1.2-r1"  # others kept
    vram.persist(vram.OFF, DISK_ENV, root=tmp_path)
    assert grubenv.load(kernels.env_path(tmp_path))[menu.VRAM_VAR] == "off"


def test_disk_menu_passes_the_kept_vram_mode_and_offers_a_vram_entry() -> None:
    cfg = menu.disk_menu([menu.MenuKernel("6.1.2-r1")], os_version="9.9.9", root_uuid="U",
                         hardening="slab_nomerge")
    assert f"set {menu.VRAM_VAR}={menu.DISK_VRAM_DEFAULT}" in cfg
    assert cfg.index(f"set {menu.VRAM_VAR}=") < cfg.index("load_env")  # grubenv overrides
    linux = [ln for ln in cfg.splitlines() if ln.strip().startswith("linux ")]
    assert "VRAM=${mixos_vram}" in linux[0]
    assert any("VRAM=on" in ln for ln in linux[1:]) and linux[-1].rstrip().endswith(
        "rescue mixos.kernel=6.1.2-r1")


def test_status_of_a_system_whose_disk_is_gone_says_next_boot_is_unknown() -> None:
    env = {**DISK_ENV, "MIXOS_VRAM": "on", "MIXOS_ROOT": "/dev/mixos-no-such-disk"}
    st = vram.status(env)
    assert st["in_effect"] == "on" and st["next_boot"] is None
