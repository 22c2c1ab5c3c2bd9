"""Mirrors: a repository line may list several URLs; one that fails is skipped for the
next. A read-only command with --repo does not wait minutes for a stalled server when
it holds a valid copy of the index."""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from mixhelpers import World
from test_mix_cache import Ranges
from test_mix_http import serve

from mix.cli import main


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libz", "1.3-r0", files={"/usr/lib/libz.so.1": os.urandom(5000)})
    w.pkg("curl", "8.0-r1", files={"/usr/bin/curl": os.urandom(5000)},
          dependencies=["libz>=1.3"])
    w.sign()
    keys = w.root / "etc/mix/keys"
    keys.mkdir(parents=True)
    shutil.copy(w.pub, keys)
    return w


def configure(w: World, line: str) -> None:
    (w.root / "etc/mix/repositories").write_text(line + "\n")


def run(w: World, capsys: Any, *args: str) -> tuple[int, str, str]:
    rc = main(["--root", str(w.root), "-y", "--timeout", "0.5", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_mirror_without_the_repository_is_skipped(w: World, tmp_path: Path,
                                                    capsys: Any) -> None:
    configure(w, f"file://{tmp_path}/gone file://{w.repo} name=main")
    rc, _out, err = run(w, capsys, "update")
    assert rc == 0, err
    assert f"file://{tmp_path}/gone" in err and "trying the next mirror" in err
    assert run(w, capsys, "install", "curl")[0] == 0
    assert w.installed() == {"curl": "8.0-r1", "libz": "1.3-r0"}


def test_a_mirror_serving_an_older_index_is_skipped(w: World, tmp_path: Path,
                                                    capsys: Any) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(w.repo, stale)
    created = int(time.time())
    w.sign(created=created)
    configure(w, f"file://{w.repo} name=main")
    assert run(w, capsys, "update")[0] == 0
    from mixhelpers import sign_repo

    sign_repo(stale, w.key, created=created - 3600)  # a mirror that lags behind
    configure(w, f"file://{stale} file://{w.repo} name=main")
    rc, _, err = run(w, capsys, "update")
    assert rc == 0 and "refusing a rollback" in err and "trying the next mirror" in err
    configure(w, f"file://{stale} name=main")
    rc, _, err = run(w, capsys, "update")
    assert rc == 4 and "rollback" in err  # under a name of its own it is still refused


class NoPackages(Ranges):
    """A mirror with the index but without the package files."""

    def do_GET(self) -> None:
        if self.path.endswith(".mixpkg"):
            self.send_error(404)
        else:
            super().do_GET()


def test_a_package_missing_on_one_mirror_comes_from_the_next(w: World, capsys: Any) -> None:
    for broken in serve(functools.partial(NoPackages, directory=str(w.repo))):
        for good in serve(functools.partial(Ranges, directory=str(w.repo))):
            configure(w, f"{broken} {good} name=main")
            rc, _, err = run(w, capsys, "install", "curl")
            assert rc == 0, err
            assert "HTTP 404" in err and "trying the next mirror" in err
    assert w.installed() == {"curl": "8.0-r1", "libz": "1.3-r0"}


def test_every_mirror_failing_is_reported_with_each(w: World, tmp_path: Path,
                                                    capsys: Any) -> None:
    configure(w, f"file://{tmp_path}/a file://{tmp_path}/b name=main")
    rc, _, err = run(w, capsys, "update")
    assert rc == 6
    assert "every mirror of" in err and f"file://{tmp_path}/a:" in err \
        and f"file://{tmp_path}/b:" in err


class Stalling(Ranges):
    stall: ClassVar[bool] = False

    def do_GET(self) -> None:
        if Stalling.stall:
            time.sleep(3)
            return
        super().do_GET()


def test_a_query_with_repo_does_not_wait_for_a_stalled_server(w: World, capsys: Any) -> None:
    Stalling.stall = False
    for url in serve(functools.partial(Stalling, directory=str(w.repo))):
        cli = ["--repo", url, "--keys-dir", str(w.keys_dir)]
        assert run(w, capsys, *cli, "update")[0] == 0
        Stalling.stall = True
        start = time.monotonic()
        rc, out, err = run(w, capsys, *cli, "search", "curl")
        took = time.monotonic() - start
        assert rc == 0 and out.startswith("curl 8.0-r1"), err
        assert "answering from the index" in err and took < 2.5, took
        rc, _, err = run(w, capsys, *cli, "install", "curl")  # a change does not
        assert rc == 6
        Stalling.stall = False


def test_file_lists_come_from_the_next_mirror_too(w: World, tmp_path: Path,
                                                  capsys: Any) -> None:
    from mix.index import scan_repo, write_index

    files: dict[str, list[str]] = {}
    write_index(w.repo, scan_repo(w.repo, files), w.key, files=files)
    partial = tmp_path / "partial"  # a mirror with the index but not the file lists
    shutil.copytree(w.repo, partial)
    (partial / "files.json.gz").unlink()
    configure(w, f"file://{partial} file://{w.repo} name=main")
    assert run(w, capsys, "update")[0] == 0
    rc, out, err = run(w, capsys, "provides", "/usr/bin/curl")
    assert rc == 0 and out == "/usr/bin/curl: curl 8.0-r1 (main)\n", err
