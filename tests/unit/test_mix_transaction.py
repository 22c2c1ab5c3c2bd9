"""Crash safety: SIGKILL mix at every checkpoint of install, upgrade and remove; after the
next run, every file on disk matches the database and no temporary is left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mixhelpers import World

from mix.database import Database
from mix.queries import verify_files

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_POINTS = 200


def run_mix(w: World, root: Path, *args: str, env_extra: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mix", "--root", str(root), "--repo", f"file://{w.repo}",
            "--keys-dir", str(w.keys_dir), "-y", *args]
    env = dict(os.environ, PYTHONPATH=str(SRC), **(env_extra or {}))
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


# The admin-edited configuration file stays when its package is removed (by design).
KEPT = {"/etc", "/etc/base.conf"}


def disk_matches_db(root: Path) -> tuple[dict[str, str], list[str]]:
    """(installed name->version, problems): problems lists every mismatch found."""
    db = Database(root / "var/lib/mix/installed.db", readonly=True)
    try:
        assert db.journal() is None, "journal left behind"
        installed = {p["name"]: p["version"] for p in db.packages()}
        files = db.all_files()
    finally:
        db.close()
    found, _modified = verify_files(root, files)
    problems = [f"{p['package']}: {p['path']}: {p['problem']}" for p in found]
    listed = {f["path"] for f in files}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root)
        if rel.startswith(("/var/lib/mix", "/var/cache/mix")):
            continue
        for n in dirnames + filenames:
            path = os.path.normpath(f"{rel}/{n}")
            if ".mixtmp-" in n:
                problems.append(f"temporary left: {path}")
            elif path not in listed and path not in ("/var", "/var/lib", "/var/cache",
                                                     "/var/lib/mix", "/var/cache/mix") \
                    and not path.endswith(".mixnew") and path not in KEPT:
                problems.append(f"not in the database: {path}")
    return installed, problems


@pytest.fixture(scope="module", params=["gzip", "zstd"])
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> World:
    w = World(tmp_path_factory.mktemp("crash"), request.param)
    w.pkg("base", "1.0", files={"/etc/base.conf": "b=1\n", "/usr/lib/libbase.so": "base1",
                                "/usr/share/base/old": "gone in 2.0"})
    w.pkg("tool", "1.0", files={"/usr/bin/tool": "tool1", "/usr/share/tool/doc": "d"},
          dependencies=["base"])
    w.sign()
    assert run_mix(w, w.root, "install", "tool").returncode == 0
    (w.root / "etc/base.conf").write_text("b=admin\n")  # an admin edit, kept across upgrade
    w.pkg("base", "2.0", files={"/etc/base.conf": "b=2\n", "/usr/lib/libbase.so": "base2",
                                "/usr/lib/libbase2.so": "new"})
    w.pkg("tool", "2.0", files={"/usr/bin/tool": "tool2", "/usr/bin/tool-helper": "h"},
          dependencies=["base>=2.0"])
    w.pkg("extra", "1.0", files={"/usr/bin/extra": "e", "/usr/share/extra/a/b/c": "deep"},
          dependencies=["tool"])
    w.sign()
    return w


OPERATIONS = {
    "install": (("install", "extra"), {"base": "1.0", "tool": "1.0"},
                {"base": "1.0", "tool": "1.0", "extra": "1.0"}),
    "upgrade": (("upgrade",), {"base": "1.0", "tool": "1.0"}, {"base": "2.0", "tool": "2.0"}),
    "remove": (("remove", "tool"), {"base": "1.0", "tool": "1.0"}, {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_sigkill_at_every_checkpoint_leaves_disk_matching_db(world: World, tmp_path: Path,
                                                             op: str) -> None:
    args, before, after = OPERATIONS[op]
    kills = 0
    for point in range(1, MAX_POINTS + 1):
        root = tmp_path / f"root{point}"
        shutil.copytree(world.root, root, symlinks=True)
        r = run_mix(world, root, *args, env_extra={"MIX_FAILPOINT_KILL": str(point)})
        if r.returncode == 0:
            break  # ran past the last checkpoint: every point was covered
        assert r.returncode == -signal.SIGKILL, r.stderr
        kills += 1
        # the next mix command that changes the root recovers (readers leave it alone)
        v = run_mix(world, root, "update")
        installed, problems = disk_matches_db(root)
        assert not problems, f"{op}: killed at checkpoint {point}: {problems}\n{v.stderr}"
        assert installed in (before, after), f"{op}: checkpoint {point}: half state {installed}"
        if installed == after and op == "upgrade":
            assert (root / "etc/base.conf").read_text() == "b=admin\n"
            assert (root / "etc/base.conf.mixnew").read_text() == "b=2\n"
        shutil.rmtree(root)
    else:
        pytest.fail(f"{op}: still killed after {MAX_POINTS} checkpoints")
    assert kills >= 5, f"{op}: only {kills} checkpoints exercised"
    print(f"{op}: killed at {kills} checkpoints, all recovered")
    installed, problems = disk_matches_db(root)
    assert installed == after and not problems


def test_reader_after_a_kill_inside_a_database_write_rolls_back_the_hot_journal(
        tmp_path: Path) -> None:
    """A mix killed while SQLite writes leaves a hot journal; `mix list`/`verify`
    (read-only) must still open the database, rolled back to its last commit."""
    import sqlite3

    from mix.database import Database

    path = tmp_path / "installed.db"
    Database(path).close()
    pid = os.fork()
    if pid == 0:  # the writer, killed in the middle of its transaction
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE half_written (x)")
        conn.execute("INSERT INTO half_written VALUES (1)")
        conn.execute("PRAGMA cache_size=1")
        conn.executemany("INSERT INTO half_written VALUES (?)", [(i,) for i in range(20000)])
        os._exit(0)  # no commit, no rollback: the journal stays hot
    os.waitpid(pid, 0)
    assert (tmp_path / "installed.db-journal").stat().st_size > 0
    db = Database(path, readonly=True)
    assert db.packages() == []
    tables = [r[0] for r in db.conn.execute("SELECT name FROM sqlite_master")]
    assert "half_written" not in tables
    db.close()


def test_a_root_path_with_url_characters_opens_its_own_database(tmp_path: Path) -> None:
    from mix.database import Database

    odd = tmp_path / "r#1?x%20"
    odd.mkdir()
    Database(odd / "installed.db").close()
    assert (odd / "installed.db").is_file()
    assert not (tmp_path / "r").exists()
