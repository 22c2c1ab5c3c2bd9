"""packages/uidmap/mixos-subids refuses what it must not do and writes nothing then (its
work, a user's range in /etc/subuid and /etc/subgid and taking it back, is proven in the
VM: tests/vm/test_packages.py, actions uidmap and slirp4netns)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mixbuild.common import PACKAGES_DIR

SCRIPT = PACKAGES_DIR / "uidmap" / "mixos-subids"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIXOS_SUBUID": str(tmp_path / "subuid"),
           "MIXOS_SUBGID": str(tmp_path / "subgid")}
    return subprocess.run(["sh", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, check=False)


@pytest.mark.parametrize("args,code,message", [
    ((), 2, "usage: mixos-subids [-r] USER"),
    (("a", "b"), 2, "usage"),
    (("no-such-user-here",), 1, "no user named 'no-such-user-here'"),
    (("root",), 1, "root has uid 0; ranges are given to users with uids 1000..65000"),
    (("nobody",), 1, "uids 1000..65000"),
])
def test_bad_request_is_refused_and_writes_nothing(tmp_path: Path, args: tuple[str, ...],
                                                   code: int, message: str) -> None:
    proc = run(tmp_path, *args)
    assert proc.returncode == code
    assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_removing_the_last_range_deletes_the_files(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("root:100000:65536\n")
    (tmp_path / "subgid").write_text("root:100000:65536\nother:165536:65536\n")
    assert run(tmp_path, "-r", "root").returncode == 0
    assert not (tmp_path / "subuid").exists()
    assert (tmp_path / "subgid").read_text() == "other:165536:65536\n"
