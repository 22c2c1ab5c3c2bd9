"""Index dates: reproducible in builds (SOURCE_DATE_EPOCH), never going back within a
repository directory (rollback protection), for the build and for `mix repo index`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mixhelpers import make_key, make_pkg

from mix.index import next_created, scan_repo, write_index

SRC = Path(__file__).resolve().parents[2] / "src"
EPOCH = 1767225600


def created(repo: Path) -> int:
    return json.loads((repo / "index.json").read_bytes())["created"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    make_pkg(tmp_path, r, "a", "1.0")
    return r


def test_empty_directory_takes_the_floor(repo: Path) -> None:
    assert next_created(repo, scan_repo(repo), EPOCH) == EPOCH


def test_same_packages_keep_the_date_and_the_bytes(tmp_path: Path, repo: Path) -> None:
    key, _pub = make_key(tmp_path)
    write_index(repo, scan_repo(repo), key, created=EPOCH + 50)
    before = (repo / "index.json").read_bytes(), (repo / "index.json.sig").read_bytes()
    again = next_created(repo, scan_repo(repo), EPOCH)
    assert again == EPOCH + 50
    write_index(repo, scan_repo(repo), key, created=again)
    assert ((repo / "index.json").read_bytes(), (repo / "index.json.sig").read_bytes()) == before


def test_changed_packages_move_one_second_past_a_newer_index(tmp_path: Path, repo: Path) -> None:
    key, _pub = make_key(tmp_path)
    write_index(repo, scan_repo(repo), key, created=EPOCH + 50)
    make_pkg(tmp_path, repo, "b", "1.0")
    assert next_created(repo, scan_repo(repo), EPOCH) == EPOCH + 51
    assert next_created(repo, scan_repo(repo), EPOCH + 100) == EPOCH + 100


def test_unreadable_old_index_is_ignored(repo: Path) -> None:
    (repo / "index.json").write_text("{not json")
    assert next_created(repo, scan_repo(repo), EPOCH) == EPOCH


def test_build_index_is_the_same_in_two_places(tmp_path: Path, repo: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mixbuild.packages import repo as build_repo

    cache = tmp_path / "cache"
    monkeypatch.setenv("MIXOS_CACHE", str(cache))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    other = tmp_path / "elsewhere" / "repo"
    shutil.copytree(repo, other)
    build_repo.sign_build_index(repo, scan_repo(repo))
    build_repo.sign_build_index(other, scan_repo(other))
    for name in ("index.json", "index.json.sig"):
        assert (repo / name).read_bytes() == (other / name).read_bytes()
    doc = json.loads((repo / "index.json").read_bytes())
    assert doc["created"] == EPOCH
    assert doc["valid_until"] == EPOCH + build_repo.BUILD_INDEX_VALID_DAYS * 86400


def test_build_refuses_an_epoch_that_signs_an_expired_index(tmp_path: Path, repo: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mixbuild.common import BuildError
    from mixbuild.packages import repo as build_repo

    monkeypatch.setenv("MIXOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(time.time()) - 800 * 86400))
    with pytest.raises(BuildError, match="already expired"):
        build_repo.sign_build_index(repo, scan_repo(repo))
    assert not (repo / "index.json").exists()


def test_repo_index_command_never_goes_back(tmp_path: Path, repo: Path) -> None:
    key, _pub = make_key(tmp_path)
    future = int(time.time()) + 3600  # an index from a machine whose clock ran ahead
    write_index(repo, scan_repo(repo), key, created=future)
    make_pkg(tmp_path, repo, "b", "1.0")
    subprocess.run([sys.executable, "-m", "mix", "repo", "index", str(repo), "--key", str(key)],
                   env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, check=True,
                   capture_output=True)
    assert created(repo) == future + 1
