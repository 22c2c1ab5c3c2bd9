"""The root squashfs: reproducible bytes, and rewritten only when the tree changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mixbuild.images.rootfs import squash, squash_key

pytestmark = pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")


def tree(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho tool\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    (root / "etc").mkdir()
    (root / "etc/conf").write_text("a=1\n")
    return root


def test_key_ignores_times_but_not_content_or_modes(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    key = squash_key(root, "xz")
    os.utime(root / "etc/conf", (1, 1))
    assert squash_key(root, "xz") == key
    assert squash_key(root, "zstd") != key
    (root / "etc/conf").chmod(0o600)
    assert squash_key(root, "xz") != key
    (root / "etc/conf").chmod(0o644)
    (root / "etc/conf").write_text("a=2\n")
    assert squash_key(root, "xz") != key


def test_same_tree_same_bytes_and_unchanged_tree_is_kept(tmp_path: Path) -> None:
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    os.utime(b / "usr/bin/tool", (1_000_000_000, 1_000_000_000))
    out_a, out_b = tmp_path / "a.squashfs", tmp_path / "b.squashfs"
    assert squash(a, out_a, "xz") and squash(b, out_b, "xz")
    assert out_a.read_bytes() == out_b.read_bytes()
    assert squash(a, out_a, "xz") is False  # unchanged: kept
    (a / "etc/conf").write_text("changed\n")
    assert squash(a, out_a, "xz") is True
    assert out_a.read_bytes() != out_b.read_bytes()
