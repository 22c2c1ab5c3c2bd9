"""A GRUB password (install.yaml security.grub_password, mixbuild iso
--grub-password-hash): the menus it makes, on the installed disk and the live ISO.
What GRUB then does with them is checked in a booted VM
(tests/vm/test_security.py, test_grub_password_guards_editing_and_rescue)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mixboot import cmdline, kernels, menu
from mixbuild.images import iso

PROJECT = Path(__file__).resolve().parents[2]
# grub-mkpasswd-pbkdf2 -c 1000 of "mixos-test" (tests/vm/test_security.py uses it too).
HASH = ("grub.pbkdf2.sha512.1000.CECA39690D18C4502EB2BCF64572BAD1E6FB192702806161A4D29E5FA239A0"
        "C3C402285B8358F7FB86FF8AE598A05D8747D7D4D295CB6A59A5133401295C1B73.A433A411E1C3BA96D98"
        "00A3B26549CA10D20A18D72603013FA938390AA3772F727CF938FB1736A3E452A9ED4E3D84AC4BB7D6106F4"
        "2D54B5A04CA891447CE23D")
UUID = "0b7c8f5e-1111-4222-8333-944455556666"


def entries(cfg: str) -> dict[str, tuple[str, str]]:
    """entry id -> (the menuentry line, its kernel arguments)."""
    found = {}
    for m in re.finditer(r'^menuentry "[^"]*" --id "?([\w.-]+)"?([^{]*)\{\n(.*?)^\}', cfg,
                         re.MULTILINE | re.DOTALL):
        args = re.search(r"^\s+linux16? \S+ (.*)$", m.group(3), re.MULTILINE)
        assert args, m.group(0)
        found[m.group(1)] = (m.group(2).strip(), args.group(1))
    return found


def disk_cfg(password: str) -> str:
    return menu.disk_menu([menu.MenuKernel("6.1.1-r1"), menu.MenuKernel("6.1.0-r1", True)],
                          os_version="9.9", root_uuid=UUID, hardening="pti=on",
                          password_hash=password)


def test_disk_menu_with_a_password_guards_editing_and_the_rescue_entry() -> None:
    cfg = disk_cfg(HASH)
    assert 'set superusers="root"' in cfg and f"password_pbkdf2 root {HASH}" in cfg
    # Before the first entry: GRUB must know the superuser before it shows any.
    assert cfg.index("password_pbkdf2") < cfg.index("menuentry")
    found = entries(cfg)
    assert set(found) == {"kernel-6.1.1-r1", "kernel-6.1.0-r1", "vram-6.1.1-r1", "rescue-6.1.1-r1"}
    for ident, (options, args) in found.items():
        if ident.startswith("rescue"):
            assert options == "" and cmdline.LOCKED_ARG not in args.split(), (ident, options)
        else:
            assert options == "--unrestricted", (ident, options)
            assert cmdline.LOCKED_ARG in args.split(), (ident, args)


def test_disk_menu_without_a_password_is_open_as_before() -> None:
    cfg = disk_cfg("")
    assert "superusers" not in cfg and "password" not in cfg
    assert all(opt == "" and cmdline.LOCKED_ARG not in args.split()
               for opt, args in entries(cfg).values())


def test_iso_menu_with_a_password(tmp_path: Path) -> None:
    for name in ("bzImage", "initramfs.img", "root.squashfs"):
        (tmp_path / name).write_bytes(b"x")
    inputs = iso.IsoInputs(kernel=tmp_path / "bzImage", initrd=tmp_path / "initramfs.img",
                           squashfs=tmp_path / "root.squashfs", version="9.9.9")
    open_cfg = iso.grub_cfg(inputs)
    assert "superusers" not in open_cfg and iso.PASSWORD_MODULES not in iso.grub_modules(inputs)
    locked = dataclasses.replace(inputs, grub_password=HASH)
    cfg = iso.grub_cfg(locked)
    assert f"password_pbkdf2 root {HASH}" in cfg
    assert iso.PASSWORD_MODULES in iso.grub_modules(locked).split()
    found = entries(cfg)
    assert found["rescue"][0] == "" and found["normal"][0] == found["vram"][0] == "--unrestricted"
    assert cmdline.LOCKED_ARG in found["normal"][1].split()
    assert iso.inputs_key(inputs, open_cfg) != iso.inputs_key(locked, cfg)


@pytest.mark.parametrize("bad", ["mixos-test", "grub.pbkdf2.sha512.0.AB.CD",
                                 "grub.pbkdf2.sha512.1000.ab.cd", HASH + "\nset superusers="])
def test_a_password_that_is_not_a_pbkdf2_hash_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="grub-mkpasswd-pbkdf2"):
        menu.password_lines(bad)
    assert iso.main(["--grub-password-hash", bad]) == 2


def test_installer_schema_takes_the_same_pattern_as_the_menu() -> None:
    schema = json.loads((PROJECT / "src/mixinstall/install.schema.json").read_text())
    pattern = schema["properties"]["security"]["properties"]["grub_password"]["pattern"]
    assert pattern == menu.GRUB_PASSWORD_PATTERN


def test_boot_json_keeps_the_hash_private_and_the_menu_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    kernels.BootConfig(root_uuid=UUID, os_version="9.9", grub_password=HASH).save(root)
    assert kernels.BootConfig.load(root) == kernels.BootConfig(
        root_uuid=UUID, os_version="9.9", grub_password=HASH)
    assert (root / kernels.BOOT_CONFIG).stat().st_mode & 0o077 == 0
    d = root / "usr/lib/linux/6.1.1-r1"
    d.mkdir(parents=True)
    (d / "vmlinuz").write_bytes(b"k")
    (d / "initramfs.img").write_bytes(b"i")
    kernels.update(root)
    cfg = root / kernels.GRUB_DIR / "grub.cfg"
    assert HASH in cfg.read_text() and cfg.stat().st_mode & 0o077 == 0
    (root / kernels.BOOT_CONFIG).write_text(json.dumps({"root_uuid": UUID,
                                                        "grub_password": "secret"}))
    with pytest.raises(kernels.BootError, match="grub-mkpasswd-pbkdf2"):
        kernels.BootConfig.load(root)
