"""A full disk, wherever mix meets it (plan check, download, extraction, database
commit), is reported as "disk full", exit 7, with nothing changed and no traceback.
The filesystems are small tmpfs mounts (these tests need root). The plan's own check
against a small root is test_mix_badinput.py's test_a_plan_larger_than_the_disk_is_refused."""

from __future__ import annotations

import functools
import gc
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World, journal

from mix.errors import DiskFullError
from mix.fetch import Fetcher

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
BUSYBOX = shutil.which("busybox")


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr!r}")
    try:
        yield where
    finally:
        gc.collect()  # file objects kept alive by a traceback would keep the mount busy
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(where)], check=False)


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_a_disk_that_fills_up_before_the_commit_changes_nothing(tmp_path: Path,
                                                                  capsys: Any) -> None:
    """A pre-install script fills the disk after the space check and the staging: the
    database commit meets the full disk (SQLite: "database or disk is full")."""
    w = World(tmp_path)
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    with tmpfs(tmp_path / "small", "3m") as small:
        w.root = small
        w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
        w.pkg("greedy", files={f"/usr/share/greedy/{i}": f"{i}" for i in range(50)},
              dependencies=["sh"],
              scripts={"pre-install": "#!/bin/sh\n/bin/busybox yes filling > /fill\nexit 0\n"})
        w.sign()
        assert w.mix("install", "sh")[0] == 0
        (w.root / "bin/busybox").chmod(0o755)
        before = w.tree()
        rc, _, err = w.mix("install", "greedy", capsys=capsys)
        assert (small / "fill").stat().st_size > 0  # the script did fill the disk
        assert rc == 7, err
        assert "disk full" in err and "rolled back" in err and "Traceback" not in err
        (small / "fill").unlink()
        assert w.tree() == before and w.installed() == {"sh": "1.0"}
        assert not [p for p in small.rglob("*") if ".mixtmp-" in p.name]
        # with space again, the next writer completes (any journal left is rolled back)
        rc, _, err = w.mix("--no-scripts", "install", "greedy", capsys=capsys)
        assert rc == 0, err
        assert journal(w) is None and w.installed() == {"sh": "1.0", "greedy": "1.0"}


def test_a_download_onto_a_full_disk_is_not_a_network_error(tmp_path: Path) -> None:
    src = tmp_path / "big.mixpkg"
    src.write_bytes(os.urandom(1 << 20))
    with tmpfs(tmp_path / "small", "256k") as small:
        with pytest.raises(DiskFullError, match="disk full: cannot store"):
            Fetcher(timeout=1).fetch_file(f"file://{src}", small / "big.mixpkg", "0" * 64)
        assert list(small.iterdir()) == []  # the partial download is gone


def test_downloads_larger_than_the_cache_filesystem_are_refused_first(
        tmp_path: Path, capsys: Any) -> None:
    from test_mix_http import Quiet, serve

    from mix.cli import main

    w = World(tmp_path)
    w.pkg("libz", "1.3-r0", files={"/usr/lib/libz.so.1": os.urandom(20_000)})
    w.pkg("curl", "8.0-r1", files={"/usr/bin/curl": os.urandom(20_000)},
          dependencies=["libz>=1.3"])
    w.sign()
    handler = functools.partial(Quiet, directory=str(w.repo))
    with tmpfs(w.root / "var/cache/mix", "16k"):
        for url in serve(handler):
            rc = main(["--root", str(w.root), "--repo", url, "--keys-dir", str(w.keys_dir),
                       "--timeout", "1", "-y", "install", "curl"])
        err = capsys.readouterr().err
        assert rc == 7, err
        assert "disk full: downloading the packages needs" in err
        assert list((w.root / "var/cache/mix").rglob("*.mixpkg")) == []
    assert w.installed() == {}


def test_update_onto_a_full_disk_keeps_the_stored_index(tmp_path: Path, capsys: Any) -> None:
    from mix.cli import main

    w = World(tmp_path)
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.sign()
    with tmpfs(w.root / "var/lib/mix/repos", "64k") as repos:
        cli = ["--root", str(w.root), "--repo", f"file://{w.repo}", "--keys-dir",
               str(w.keys_dir)]
        assert main([*cli, "update"]) == 0
        stored = sorted(p for p in repos.rglob("*") if p.is_file())
        before = {p: p.read_bytes() for p in stored}
        # a much bigger index than there is room for
        for i in range(30):
            w.pkg(f"p{i}", files={f"/usr/share/p{i}": "x"}, description="d" * 3000)
        w.sign()
        capsys.readouterr()
        rc = main([*cli, "update"])
        err = capsys.readouterr().err
        assert rc == 7 and "disk full" in err and "Traceback" not in err
        assert {p: p.read_bytes() for p in stored} == before
        assert not [p for p in repos.rglob("*") if ".tmp" in p.name]
