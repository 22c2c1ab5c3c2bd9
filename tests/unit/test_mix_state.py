"""mix's own state (database, lock, journal, index store, download cache, script files)
stays inside --root, resolved as package paths are; readers never need the lock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World, journal

from mix.config import load
from mix.errors import UsageError

BUSYBOX = shutil.which("busybox")


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def everything_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_state_behind_an_absolute_var_link_stays_inside_the_root(w: World, tmp_path: Path,
                                                               capsys: Any) -> None:
    """ROOT/var -> /elsewhere means ROOT/elsewhere once the root is /: the database, lock
    and stored indexes go there, never to the host's /elsewhere."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (w.root / "var").symlink_to(outside)
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.sign()
    rc, _, err = w.mix("install", "a", capsys=capsys)
    assert rc == 0, err
    assert everything_under(outside) == []
    state = w.root / str(outside).lstrip("/") / "lib/mix"
    assert (state / "installed.db").is_file() and (state / "lock").is_file()
    assert (state / "repos").is_dir()
    rc, out, _ = w.mix("--json", "list", capsys=capsys)
    assert rc == 0 and [p["name"] for p in json.loads(out)] == ["a"]


@pytest.mark.parametrize("link", ["var", "var/lib", "var/lib/mix"])
def test_state_behind_a_link_leading_out_of_the_root_is_refused(w: World, tmp_path: Path,
                                                                capsys: Any, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (w.root / link).parent.mkdir(parents=True, exist_ok=True)
    depth = len((w.root / link).parent.relative_to(tmp_path).parts)
    (w.root / link).symlink_to("../" * depth + "outside")
    assert (w.root / link).resolve() == outside
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.sign()
    for args in (("install", "a"), ("list",), ("update",)):
        rc, _, err = w.mix(*args, capsys=capsys)
        assert rc == 2, (args, err)
        assert "leads outside the root" in err and "/var/lib/mix" in err
    assert everything_under(outside) == []
    assert not (w.root / "usr").exists()


def test_download_cache_behind_a_link_leading_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/cache").mkdir(parents=True)
    (root / "var/cache/mix").symlink_to("../../../outside")
    cfg = load(root)
    assert cfg.state_dir == root / "var/lib/mix"
    with pytest.raises(UsageError, match="leads outside the root"):
        _ = cfg.cache_dir
    (root / "var/cache/mix").unlink()
    (root / "var/cache/mix").symlink_to("/srv/mixcache")  # absolute: re-rooted
    assert load(root).cache_dir == root / "srv/mixcache/packages"


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_script_files_behind_a_link_leading_out_of_the_root_are_refused(
        w: World, tmp_path: Path, capsys: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("noisy", files={"/etc/noisy": "n"}, dependencies=["sh"],
          scripts={"pre-install": "#!/bin/sh\necho hello\n"})
    w.sign()
    assert w.mix("install", "sh")[0] == 0
    (w.root / "bin/busybox").chmod(0o755)
    (w.root / "var/lib/mix/tmp").mkdir(exist_ok=True)
    (w.root / "var/lib/mix/tmp").rmdir()
    (w.root / "var/lib/mix/tmp").symlink_to("../../../../outside")
    rc, _, err = w.mix("install", "noisy", capsys=capsys)
    assert rc == 7 and "leads outside the root" in err and "/var/lib/mix/tmp" in err
    assert everything_under(outside) == []
    assert "noisy" not in w.installed() and not (w.root / "etc/noisy").exists()


def test_a_usr_link_to_the_hosts_usr_is_named_as_such(w: World, capsys: Any) -> None:
    """ROOT/usr -> /usr points at the host's /usr; inside the root it is itself."""
    (w.root / "usr").symlink_to("/usr")
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.sign()
    rc, _, err = w.mix("install", "a", capsys=capsys)
    assert rc == 7
    assert f"{w.root}/usr is a symlink outside the root (to /usr)" in err
    assert "too many levels" not in err
    assert w.installed() == {}


# --- readers and the lock ------------------------------------------------------------------
def a_writer_at_work(w: World) -> Any:
    """What a writer in the middle of its staging phase holds: the lock, and a journal
    row 'staging' that lists the (not yet visible) temporaries."""
    from mix.database import Database
    from mix.lock import RootLock

    lock = RootLock(w.root / "var/lib/mix").__enter__()
    db = Database(w.root / "var/lib/mix/installed.db")
    with db.transaction() as c:
        Database.set_journal(c, "staging", {"txid": "t", "renames": [], "created": [],
                                            "deletes": [], "rmdirs": [], "transfers": []})
    db.close()
    return lock


def test_readers_answer_during_a_transaction_and_leave_its_journal(w: World,
                                                                   capsys: Any) -> None:
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.pkg("b", files={"/usr/bin/b": "b"})
    w.sign()
    assert w.mix("install", "a")[0] == 0
    lock = a_writer_at_work(w)
    try:
        for args in (("list",), ("info", "a"), ("files", "a"), ("owner", "/usr/bin/a"),
                     ("search", "a"), ("verify",), ("list", "--available")):
            rc, out, err = w.mix(*args, capsys=capsys)
            assert rc == 0, (args, err)
            assert "interrupted" not in err
        rc, out, _ = w.mix("--json", "list", capsys=capsys)
        assert [p["name"] for p in json.loads(out)] == ["a"]  # the last committed state
        rc, _, err = w.mix("install", "b", capsys=capsys)
        assert rc == 5 and "--wait" in err
        assert journal(w) is not None
    finally:
        lock.__exit__(None, None, None)
    # the writer died (lock released, journal left): readers say so, only a writer recovers
    rc, out, err = w.mix("list", capsys=capsys)
    assert rc == 0 and out.strip() == "a 1.0" and "interrupted" in err
    assert journal(w) is not None
    rc, _, err = w.mix("install", "b", capsys=capsys)
    assert rc == 0 and "rolled back an interrupted transaction" in err
    assert journal(w) is None and w.installed() == {"a": "1.0", "b": "1.0"}


def test_a_writer_waits_for_the_lock_with_wait(w: World, capsys: Any) -> None:
    import threading
    import time

    from mix.lock import RootLock

    w.pkg("a", files={"/usr/bin/a": "a"})
    w.pkg("b", files={"/usr/bin/b": "b"})
    w.sign()
    lock = RootLock(w.root / "var/lib/mix").__enter__()
    try:
        start = time.monotonic()
        rc, _, err = w.mix("--wait=0.3", "install", "a", capsys=capsys)
        assert rc == 5 and "after waiting 0.3 s" in err
        assert 0.3 <= time.monotonic() - start < 5
    finally:
        threading.Timer(0.5, lock.__exit__, (None, None, None)).start()
    rc, _, err = w.mix("--wait", "install", "a", capsys=capsys)  # no limit; the word after
    assert rc == 0 and "waiting for another mix process" in err   # --wait is the command
    lock = RootLock(w.root / "var/lib/mix").__enter__()
    threading.Timer(0.5, lock.__exit__, (None, None, None)).start()
    rc, _, err = w.mix("install", "--wait=30", "b", capsys=capsys)
    assert rc == 0, err
    assert w.installed() == {"a": "1.0", "b": "1.0"}
    with pytest.raises(SystemExit):
        w.mix("--wait=-1", "install", "a")


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_queries_during_a_real_install_all_answer(w: World, capsys: Any) -> None:
    """The report: 3 of 6 `mix list` during an install failed with exit 5."""
    import os
    import subprocess
    import sys
    import time

    src = Path(__file__).resolve().parents[2] / "src"
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("slow", files={"/usr/bin/slow": "s"}, dependencies=["sh"],
          scripts={"pre-install": "#!/bin/sh\ntouch /started\n/bin/busybox sleep 3\n"})
    w.sign()
    assert w.mix("install", "sh", capsys=capsys)[0] == 0
    (w.root / "bin/busybox").chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(src))
    install = subprocess.Popen([sys.executable, "-m", "mix", *w.args("install", "slow")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 30
    while not (w.root / "started").exists():
        assert time.monotonic() < deadline and install.poll() is None
        time.sleep(0.05)
    queries = [subprocess.run([sys.executable, "-m", "mix", "--root", str(w.root), *q],
                              env=env, capture_output=True, text=True, check=False)
               for q in (["list"], ["list"], ["info", "sh"], ["files", "sh"],
                         ["owner", "/bin/sh"], ["verify"])]
    assert install.poll() is None, "the install should still be running"
    for q in queries:
        assert q.returncode == 0, (q.args, q.stderr)
    assert [q.stdout for q in queries[:2]] == ["sh 1.0\n", "sh 1.0\n"]
    assert install.wait(timeout=60) == 0, install.stderr
    assert w.installed() == {"sh": "1.0", "slow": "1.0"}


def test_on_the_real_root_a_dotdot_at_the_top_stays_there() -> None:
    """Nothing leads out of /: a relative link climbing above it is / again (as for the
    kernel), so mix's state behind such a link is not refused when the root is /."""
    from mix.rootpath import RootResolver

    r = RootResolver(Path("/"), planned={"/var": ("symlink", "../../srv/var")})
    assert r.resolve_dir("/var/lib/mix", "test") == "/srv/var/lib/mix"
    with pytest.raises(Exception, match="leads outside the root"):
        RootResolver(Path("/tmp"), planned={"/var": ("symlink", "../../srv/var")}
                     ).resolve_dir("/var/lib/mix", "test")
