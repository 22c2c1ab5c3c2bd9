"""The initramfs archive writer: what the kernel unpacks, byte-for-byte reproducible."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mixbuild.images.cpio import Entry, newc_archive

ENTRIES = [
    Entry.directory("bin"),
    Entry.file("bin/busybox", b"\x7fELF fake", 0o755),
    Entry.symlink("bin/sh", "busybox"),
    Entry.directory("dev"),
    Entry.chardev("dev/console", 5, 1),
    Entry.file("init", b"#!/bin/sh\necho hi\n", 0o755),
]


def test_gnu_cpio_lists_every_member_with_owner_root_and_the_given_mtime() -> None:
    archive = newc_archive(list(reversed(ENTRIES)), mtime=1767225600)
    out = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True,
                         check=True).stdout.decode()
    lines = out.splitlines()
    assert [line.split()[-1] if "->" not in line else line.split()[-3] for line in lines] == \
        ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"]
    assert all(" root " in line for line in lines), out
    assert all("Jan  1  2026" in line for line in lines), out
    console = next(line for line in lines if line.endswith("dev/console"))
    assert console.startswith("crw-------") and "5,   1" in console


def test_extracted_files_keep_content_modes_and_symlinks(tmp_path: Path) -> None:
    archive = newc_archive([e for e in ENTRIES if e.path != "dev/console"], mtime=0)
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "init").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bin" / "sh").readlink() == Path("busybox")


def test_same_entries_in_any_order_give_the_same_bytes() -> None:
    assert newc_archive(ENTRIES, 42) == newc_archive(list(reversed(ENTRIES)), 42)
    assert newc_archive(ENTRIES, 42) != newc_archive(ENTRIES, 43)


def test_members_are_four_byte_aligned_and_the_archive_ends_with_the_trailer() -> None:
    archive = newc_archive(ENTRIES, 0)
    assert archive.startswith(b"070701")
    assert b"TRAILER!!!\0" in archive[-128:]
    assert len(archive) % 4 == 0


@pytest.mark.parametrize("bad", ["/etc/passwd", "../escape", "bin/../../x", ""])
def test_refuses_paths_that_would_escape_or_be_ambiguous(bad: str) -> None:
    with pytest.raises(ValueError, match="bad member path"):
        newc_archive([Entry.file(bad, b"x")], 0)


def test_refuses_duplicates_and_orphans() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        newc_archive([Entry.file("init", b"a"), Entry.file("init", b"b")], 0)
    with pytest.raises(ValueError, match="no parent directory"):
        newc_archive([Entry.file("etc/hostname", b"mixos\n")], 0)
