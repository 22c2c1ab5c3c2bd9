"""An installed system's kernels through their life: first install, an upgrade
tried once, marked good from userspace, a failed trial that falls back, and at
most two kernels kept in /boot; the menu that GRUB reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mixboot import grubenv, kernels

UUID = "0b7c8f5e-1111-4222-8333-944455556666"


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/mixos").mkdir(parents=True)
    kernels.BootConfig(root_uuid=UUID, kernel_args="console=hvc0", os_version="9.9").save(root)
    (root / "usr/lib/mixos").mkdir(parents=True)
    (root / "usr/lib/mixos/kernel-cmdline").write_text("# hardening\nslab_nomerge pti=on\n")
    return root


def install_kernel(root: Path, version: str) -> None:
    """What mix does when the linux package is installed or upgraded: the old
    version's files go, the new one's arrive."""
    lib = root / "usr/lib/linux"
    if lib.is_dir():
        shutil.rmtree(lib)
    d = lib / version
    d.mkdir(parents=True)
    (d / "vmlinuz").write_bytes(b"kernel " + version.encode())
    (d / "initramfs.img").write_bytes(b"initramfs " + version.encode())


def env(root: Path) -> dict[str, str]:
    return grubenv.load(root / "boot/grub/grubenv")


def booted(version: str) -> str:
    return f"BOOT_IMAGE=/boot/{version}/vmlinuz quiet mixos.kernel={version}"


def grub_consumes_trial(root: Path) -> None:
    """What the menu's save_env does at boot: the trial is cleared before it runs."""
    grubenv.save(root / "boot/grub/grubenv", {**env(root), "mixos_trial": ""})


def test_first_install_makes_the_kernel_the_default(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_kernel(root, "6.1.1-r1")
    assert "installed as the default" in kernels.update(root)
    assert env(root)["mixos_good"] == "6.1.1-r1" and not env(root).get("mixos_trial")
    assert (root / "boot/6.1.1-r1/vmlinuz").read_bytes() == b"kernel 6.1.1-r1"
    # a hard link, not a copy: the kernel costs its size once
    assert (root / "boot/6.1.1-r1/vmlinuz").stat().st_ino == \
        (root / "usr/lib/linux/6.1.1-r1/vmlinuz").stat().st_ino
    assert (root / "boot/grub/grubenv").stat().st_size == 1024


def test_upgrade_is_tried_once_then_marked_good(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_kernel(root, "6.1.1-r1")
    kernels.update(root)
    install_kernel(root, "6.1.2-r1")
    assert "tried once" in kernels.update(root)
    assert env(root)["mixos_trial"] == "6.1.2-r1" and env(root)["mixos_good"] == "6.1.1-r1"
    # the old kernel stays bootable although its package files are gone
    assert kernels.boot_kernels(root) == ["6.1.2-r1", "6.1.1-r1"]
    grub_consumes_trial(root)
    assert "now the default" in kernels.mark_good(root, booted("6.1.2-r1"))
    assert env(root)["mixos_good"] == "6.1.2-r1"
    assert kernels.boot_kernels(root) == ["6.1.2-r1", "6.1.1-r1"]  # previous kept as fallback
    # a third kernel pushes the first out of /boot
    install_kernel(root, "6.1.3-r1")
    kernels.update(root)
    assert kernels.boot_kernels(root) == ["6.1.3-r1", "6.1.2-r1"]


def test_failed_trial_leaves_the_previous_kernel_the_default(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_kernel(root, "6.1.1-r1")
    kernels.update(root)
    install_kernel(root, "6.1.2-r1")
    kernels.update(root)
    grub_consumes_trial(root)  # the new kernel was booted once and never marked good
    assert env(root)["mixos_good"] == "6.1.1-r1" and env(root)["mixos_trial"] == ""
    assert kernels.mark_good(root, booted("6.1.1-r1")).startswith("kernel 6.1.1-r1 is the")
    assert kernels.boot_kernels(root) == ["6.1.2-r1", "6.1.1-r1"]


def test_menu_boots_the_trial_once_with_the_good_kernel_as_fallback(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    install_kernel(root, "6.1.1-r1")
    kernels.update(root)
    install_kernel(root, "6.1.2-r1")
    kernels.update(root)
    cfg = (root / "boot/grub/grub.cfg").read_text()
    assert "load_env" in cfg
    trial = cfg.index('set default="kernel-${mixos_trial}"')
    assert cfg.index("set mixos_trial=", trial) < cfg.index("save_env mixos_trial", trial)
    assert 'set fallback="kernel-${mixos_good}"' in cfg
    # GRUB reads a default starting with a digit as an entry number: ids never do.
    ids = [line.split("--id ")[1].split()[0].strip('"') for line in cfg.splitlines()
           if "--id " in line]
    assert ids and not any(i[0].isdigit() for i in ids)
    # the known-good kernel is the first entry (what GRUB boots without its environment)
    assert ids[0] == "kernel-6.1.1-r1"
    for version in ("6.1.1-r1", "6.1.2-r1"):
        assert f'--id "kernel-{version}"' in cfg
        assert f"linux16 /boot/{version}/vmlinuz " in cfg and f"initrd /boot/{version}/initramfs.img" in cfg
    linux = [line.split(None, 2)[2] for line in cfg.splitlines()
             if line.strip().startswith("linux ")]
    for args in linux:
        assert f"mixos.root=UUID={UUID}" in args
        assert "slab_nomerge pti=on" in args and "console=hvc0" in args
        assert "console=ttyS0,115200" in args
    assert "(previous)" in cfg and '--id "rescue-6.1.2-r1"' in cfg


def test_live_system_has_nothing_to_do(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    assert "nothing to do" in kernels.update(root)
    assert "nothing to mark" in kernels.mark_good(root, "quiet")
    assert not (root / "boot").exists()


def test_update_without_a_kernel_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(kernels.BootError, match="install the 'linux' package"):
        kernels.update(make_root(tmp_path))


def test_broken_boot_json_is_an_error(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/mixos/boot.json").write_text(json.dumps({"kernel_args": ""}))
    with pytest.raises(kernels.BootError, match="not a valid boot configuration"):
        kernels.update(root)
