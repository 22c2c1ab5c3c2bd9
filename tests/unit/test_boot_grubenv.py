"""GRUB's environment block: round trips, changes in place (same inode, same
size: GRUB writes the file by its sectors), refusals, and GRUB's own tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mixboot import grubenv


def test_create_makes_a_padded_1024_byte_block(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grubenv.create(path)
    data = path.read_bytes()
    assert len(data) == 1024 and data.startswith(b"# GRUB Environment Block\n")
    assert data[len(grubenv.SIGNATURE):] == b"#" * (1024 - len(grubenv.SIGNATURE))
    assert grubenv.load(path) == {}


def test_update_round_trips_and_writes_in_place(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grubenv.create(path, {"saved_entry": "normal"})
    inode = path.stat().st_ino
    values = {"next_entry": "rescue", "path": "C:\\boot\\x", "note": "ünïcode = ok"}
    assert grubenv.update(path, values) == {"saved_entry": "normal", **values}
    assert grubenv.load(path) == {"saved_entry": "normal", **values}
    assert b"path=C:\\\\boot\\\\x\n" in path.read_bytes()  # GRUB's escaping
    grubenv.update(path, {"next_entry": None})
    assert "next_entry" not in grubenv.load(path)
    grubenv.save(path, {"a": "1"})
    assert grubenv.load(path) == {"a": "1"}
    assert path.stat().st_ino == inode and path.stat().st_size == 1024


def test_a_block_of_another_size_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    path.write_bytes(grubenv.SIGNATURE + b"x=1\n" + b"#" * 2000)
    size = path.stat().st_size
    grubenv.update(path, {"y": "2"})
    assert path.stat().st_size == size and grubenv.load(path) == {"x": "1", "y": "2"}


def test_oversized_content_is_refused_and_the_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grubenv.create(path, {"a": "1"})
    before = path.read_bytes()
    with pytest.raises(grubenv.GrubEnvError, match=r"grubenv: the variables need \d+ bytes, "
                                                   r"more than the block's 1024"):
        grubenv.update(path, {"big": "x" * 1000})
    assert path.read_bytes() == before
    # Exactly full fits: no padding left.
    room = 1024 - len(grubenv.SIGNATURE) - len(b"a=1\nb=\n")
    grubenv.update(path, {"b": "y" * room})
    assert b"#" not in path.read_bytes()[len(grubenv.SIGNATURE):]


@pytest.mark.parametrize(("name", "value", "match"), [
    ("next_entry", "two\nlines", "must not contain a newline"),
    ("bad=name", "x", "name 'bad=name' is invalid"),
    ("", "x", "name '' is invalid"),
    ("9lives", "x", "is invalid"),
])
def test_bad_names_and_values_are_refused(tmp_path: Path, name: str, value: str,
                                          match: str) -> None:
    path = tmp_path / "grubenv"
    grubenv.create(path)
    with pytest.raises(grubenv.GrubEnvError, match=match):
        grubenv.update(path, {name: value})


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grubenv.create(path)
    with pytest.raises(grubenv.GrubEnvError, match="never recreate it"):
        grubenv.create(path)


def test_what_is_not_an_environment_block_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "grub.cfg"
    path.write_text("set timeout=0\n")
    with pytest.raises(grubenv.GrubEnvError, match="not a GRUB environment block"):
        grubenv.update(path, {"a": "1"})
    assert path.read_text() == "set timeout=0\n"
    with pytest.raises(grubenv.GrubEnvError, match="make one with create"):
        grubenv.update(tmp_path / "absent", {"a": "1"})


@pytest.mark.skipif(shutil.which("grub-editenv") is None, reason="needs grub-editenv")
def test_blocks_agree_with_grub_editenv(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    subprocess.run(["grub-editenv", str(path), "create"], check=True)
    subprocess.run(["grub-editenv", str(path), "set", "saved_entry=vram", "w=a\\b"], check=True)
    assert grubenv.load(path) == {"saved_entry": "vram", "w": "a\\b"}
    grubenv.update(path, {"next_entry": "rescue"})
    listed = subprocess.run(["grub-editenv", str(path), "list"], check=True,
                            capture_output=True, text=True).stdout
    assert listed.splitlines() == ["saved_entry=vram", "w=a\\b", "next_entry=rescue"]
