"""setuid/setgid files in the built root file system: only those listed (and
justified in docs/security.md) in security_policy.ALLOWED_SETID, which is empty."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from security_policy import ALLOWED_SETID, PROJECT

ROOTFS = PROJECT / "artifacts" / "rootfs"


def setid_files(root: Path) -> dict[str, str]:
    """path inside ROOT -> 'setuid', 'setgid' or 'setuid+setgid'."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                continue
            bits = [b for b, flag in (("setuid", stat.S_ISUID), ("setgid", stat.S_ISGID))
                    if mode & flag]
            if bits:
                found["/" + str(path.relative_to(root))] = "+".join(bits)
    return found


def test_setid_scan_finds_a_setuid_file(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/su").write_text("x")
    (tmp_path / "usr/bin/su").chmod(0o4755)
    (tmp_path / "usr/bin/wall").write_text("x")
    (tmp_path / "usr/bin/wall").chmod(0o2755)
    (tmp_path / "usr/bin/ls").write_text("x")
    assert setid_files(tmp_path) == {"/usr/bin/su": "setuid", "/usr/bin/wall": "setgid"}


def test_image_has_only_justified_setid_files() -> None:
    if not ROOTFS.is_dir():
        pytest.skip(f"{ROOTFS} not built yet (make rootfs); tests/vm checks the running image")
    found = setid_files(ROOTFS)
    print("\nsetuid/setgid files in artifacts/rootfs:", found or "none")
    unexpected = {p: b for p, b in found.items() if p not in ALLOWED_SETID}
    assert not unexpected, (f"setuid/setgid files not justified in docs/security.md: "
                            f"{unexpected}")
