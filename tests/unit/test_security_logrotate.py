"""mixos-logrotate (BusyBox sh, as on the target) keeps each log within MAX_KB,
shifts older rotations up to KEEP and deletes the oldest, and keeps logs 0600."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from security_policy import PROJECT

ROTATE = PROJECT / "packages" / "mixos-hardening" / "files" / "mixos-logrotate"


def rotate_once(conf: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (make deps installs busybox-static)")
    subprocess.run([busybox, "sh", str(ROTATE), "--once"], check=True, timeout=30,
                   env={"MIXOS_LOGROTATE_CONF": str(conf), "PATH": "/usr/bin:/bin"})


def test_rotation_is_bounded_in_size_and_count(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f'MAX_KB=4\nKEEP=3\nINTERVAL=1\nLOGS="{log}"\n')
    for generation in range(6):
        log.write_text(f"generation {generation}\n" + "x" * 5000)
        log.chmod(0o644)
        rotate_once(conf)
        assert not log.exists() or log.stat().st_size == 0
    kept = sorted(p.name for p in tmp_path.glob("messages.*"))
    assert kept == ["messages.1", "messages.2", "messages.3"]
    # Newest first: .1 holds the last generation, .3 the oldest one kept.
    assert (tmp_path / "messages.1").read_text().startswith("generation 5")
    assert (tmp_path / "messages.3").read_text().startswith("generation 3")
    total = sum(p.stat().st_size for p in tmp_path.glob("messages*"))
    assert total <= 4 * 1024 * 3 + 3 * 5100


def test_small_log_is_left_alone_but_made_private(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f'MAX_KB=4\nKEEP=3\nLOGS="{log}"\n')
    log.write_text("short\n")
    log.chmod(0o644)
    rotate_once(conf)
    assert log.read_text() == "short\n"
    assert log.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("messages.*"))
