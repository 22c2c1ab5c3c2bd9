"""Repository trust over time: rollback protection under every name of a repository,
index validity when signing, and a stored index that has since expired."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World

from mix.cli import main


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libc", files={"/usr/lib/libc": "c"})
    w.pkg("app", files={"/usr/bin/app": "a"}, dependencies=["libc"])
    w.sign()
    etc = w.root / "etc/mix"
    (etc / "keys").mkdir(parents=True)
    shutil.copy(w.pub, etc / "keys")
    (etc / "repositories").write_text(f"file://{w.repo} name=main\n")
    return w


def created(w: World) -> int:
    return int(json.loads((w.repo / "index.json").read_bytes())["created"])


@pytest.mark.parametrize("naming", [
    "--repo file://{repo}", "--repo file://{repo}/", "--repo file://{repo}/./",
    "--repo file://{parent}//repo", "name=other"])
def test_an_older_index_is_refused_under_every_name_of_the_repository(
        w: World, capsys: Any, naming: str) -> None:
    cli = ["--root", str(w.root)]
    assert main([*cli, "update"]) == 0
    newest = created(w)
    w.sign(created=newest - 100)  # a mirror replaying an older index
    assert main([*cli, "update"]) == 4
    assert "rollback" in capsys.readouterr().err
    if naming == "name=other":
        (w.root / "etc/mix/repositories").write_text(f"file://{w.repo} name=other\n")
        extra: list[str] = []
    else:
        extra = naming.format(repo=w.repo, parent=w.repo.parent).split()
    for command in (["update"], ["-y", "install", "app"]):
        rc = main([*cli, *extra, *command])
        err = capsys.readouterr().err
        assert rc == 4, (command, err)
        assert "rollback" in err
    from mix.database import Database

    assert Database(w.root / "var/lib/mix/installed.db", readonly=True).packages() == []
    w.sign(created=newest + 1)  # a newer index is accepted under any name
    assert main([*cli, *extra, "-y", "install", "app"]) == 0


@pytest.mark.parametrize("days", ["0", "-1"])
def test_repo_index_refuses_an_index_that_would_already_have_expired(
        tmp_path: Path, w: World, capsys: Any, days: str) -> None:
    (w.repo / "index.json").unlink()
    (w.repo / "index.json.sig").unlink()
    rc = main(["repo", "index", str(w.repo), "--key", str(w.key), "--valid-days", days])
    err = capsys.readouterr().err
    assert rc == 2 and f"--valid-days {days}" in err and "at least 1" in err
    assert not (w.repo / "index.json").exists() and not (w.repo / "index.json.sig").exists()
    assert main(["repo", "index", str(w.repo), "--key", str(w.key), "--valid-days", "1"]) == 0


def test_a_stored_index_that_has_expired_installs_nothing(
        w: World, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = ["--root", str(w.root)]
    w.sign(valid_days=2)
    assert main([*cli, "update"]) == 0
    assert main([*cli, "-y", "install", "libc"]) == 0
    capsys.readouterr()
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3 * 86400)
    rc = main([*cli, "-y", "install", "app"])
    err = capsys.readouterr().err
    assert rc == 4 and "expired on" in err and "mix update" in err
    # looking still works, with a warning; so does removing
    rc = main([*cli, "list", "--available"])
    out, err = capsys.readouterr()
    assert rc == 0 and "app 1.0" in out and "has expired" in err
    assert main([*cli, "-y", "remove", "libc"]) == 0
    # a fresh index (re-signed) is fetched by update and serves installs again
    w.sign(created=int(now + 3 * 86400 - 60))
    assert main([*cli, "update"]) == 0
    assert main([*cli, "-y", "install", "app"]) == 0
