"""Every exit status docs/mix.md lists, each caused the way a user meets it."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World

SRC = Path(__file__).resolve().parents[2] / "src"
DOCS = Path(__file__).resolve().parents[2] / "docs/mix.md"
BUSYBOX = shutil.which("busybox")


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libc", files={"/usr/lib/libc.so.6": "libc"})
    w.pkg("app", files={"/usr/bin/app": "app"}, dependencies=["libc"])
    w.pkg("rival", files={"/usr/bin/app": "rival"})
    w.pkg("broken", files={"/usr/bin/broken": "b"}, dependencies=["ghost"])
    w.sign()
    return w


def mix_in(w: World, capsys: Any, *args: str, repo: str | None = None) -> tuple[int, str]:
    from mix.cli import main

    cli = ["--root", str(w.root), "--keys-dir", str(w.keys_dir), "-y"]
    if repo != "":
        cli += ["--repo", repo or f"file://{w.repo}"]
    rc = main([*cli, *args])
    return rc, capsys.readouterr().err


def test_0_success(w: World, capsys: Any) -> None:
    assert mix_in(w, capsys, "install", "app")[0] == 0


def test_1_unexpected_error(w: World, capsys: Any) -> None:
    (w.root / "var/lib/mix/installed.db").mkdir(parents=True)  # not a database
    rc, err = mix_in(w, capsys, "install", "app")
    assert rc == 1 and "cannot open the package database" in err and "Traceback" not in err


def test_2_usage(w: World, capsys: Any) -> None:
    rc, err = mix_in(w, capsys, "install", "app", repo="")
    assert rc == 2 and "no repositories configured" in err
    rc, err = mix_in(w, capsys, "search", "app", repo="")
    assert rc == 2 and "no repositories configured" in err
    with pytest.raises(SystemExit) as e:
        mix_in(w, capsys, "install", "--no-such-option", "app")
    assert e.value.code == 2


def test_3_unresolvable(w: World, capsys: Any) -> None:
    rc, err = mix_in(w, capsys, "install", "broken")
    assert rc == 3 and "ghost" in err


def test_4_trust_missing_signature(w: World, capsys: Any) -> None:
    (w.repo / "index.json.sig").unlink()
    rc, err = mix_in(w, capsys, "update")
    assert rc == 4 and "is not signed" in err and "index.json.sig does not exist" in err


def test_4_trust_package_larger_than_signed(w: World, capsys: Any) -> None:
    from test_mix_http import Quiet, serve

    pkg = w.repo / "libc-1.0.noarch.mixpkg"
    pkg.write_bytes(pkg.read_bytes() + b"\0" * 4096)  # served bigger than signed
    handler = functools.partial(Quiet, directory=str(w.repo))
    for url in serve(handler):
        rc, err = mix_in(w, capsys, "--timeout", "2", "install", "app", repo=url)
    assert rc == 4, err
    assert "the size the signed index gives" in err and "check the repository URL" not in err
    assert w.installed() == {}


def test_5_locked(w: World, capsys: Any) -> None:
    from mix.lock import RootLock

    with RootLock(w.root / "var/lib/mix"):
        rc, err = mix_in(w, capsys, "install", "app")
    assert rc == 5 and "another mix process" in err


def test_6_download_failed(w: World, capsys: Any, tmp_path: Path) -> None:
    rc, err = mix_in(w, capsys, "update", repo=f"file://{tmp_path}/nowhere")
    assert rc == 6 and "cannot download" in err


def test_7_transaction_failed(w: World, capsys: Any) -> None:
    assert mix_in(w, capsys, "install", "app")[0] == 0
    rc, err = mix_in(w, capsys, "install", "rival")
    assert rc == 7 and "file conflict" in err


def test_8_bad_package(w: World, capsys: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mixpkg"
    bad.write_bytes(b"not a package")
    rc, _err = mix_in(w, capsys, "install", "--allow-untrusted", str(bad))
    assert rc == 8


def test_9_not_found(w: World, capsys: Any) -> None:
    rc, err = mix_in(w, capsys, "info", "ghost")
    assert rc == 9 and "no package named 'ghost'" in err


def test_10_declined(w: World, capsys: Any) -> None:
    from mix.cli import main

    rc = main(["--root", str(w.root), "--repo", f"file://{w.repo}", "--keys-dir",
               str(w.keys_dir), "install", "app"])  # no -y, stdin is not a terminal
    assert rc == 10 and "pass -y" in capsys.readouterr().err


def test_11_verify(w: World, capsys: Any) -> None:
    assert mix_in(w, capsys, "install", "app")[0] == 0
    (w.root / "usr/bin/app").write_text("changed")
    rc, err = mix_in(w, capsys, "verify")
    assert rc == 11 and "differ from the database" in err


def start_waiting(w: World) -> subprocess.Popen[str]:
    """A mix install waiting (--wait) for the lock this test holds."""
    argv = [sys.executable, "-m", "mix", "--root", str(w.root), "--repo", f"file://{w.repo}",
            "--keys-dir", str(w.keys_dir), "-y", "--wait", "install", "app"]
    # SIGINT as at a terminal: a test run started in the background (make test &)
    # hands its children SIGINT ignored, and Python then installs no handler; the
    # default disposition is restored before mix starts.
    restore = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", restore, *argv],
                            env=dict(os.environ, PYTHONPATH=str(SRC)),
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting for another mix process" in line, line
    return proc


@pytest.mark.parametrize(("sig", "code", "text"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_130_143_signals(w: World, sig: int, code: int, text: str) -> None:
    from mix.lock import RootLock

    with RootLock(w.root / "var/lib/mix"):
        proc = start_waiting(w)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == code and text in err and "Traceback" not in err


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_143_sigterm_during_a_transaction_rolls_it_back(w: World, capsys: Any) -> None:
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("slow", files={"/usr/bin/slow": "s"}, dependencies=["sh"],
          scripts={"pre-install": "#!/bin/sh\ntouch /started\n/bin/busybox sleep 30\n"})
    w.sign()
    assert mix_in(w, capsys, "install", "sh")[0] == 0
    (w.root / "bin/busybox").chmod(0o755)
    before = w.tree()
    argv = [sys.executable, "-m", "mix", "--root", str(w.root), "--repo", f"file://{w.repo}",
            "--keys-dir", str(w.keys_dir), "-y", "install", "slow"]
    proc = subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=str(SRC)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (w.root / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    (w.root / "started").unlink()
    assert w.tree() == before and w.installed() == {"sh": "1.0"}
    assert not [p for p in w.root.rglob("*") if ".mixtmp-" in p.name]


def test_every_documented_code_has_a_test_here() -> None:
    table = DOCS.read_text().split("## Exit status", 1)[1].split("\n## ", 1)[0]
    documented = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    tested = {int(c) for name in globals() if name.startswith("test_")
              for c in re.findall(r"(?<=_)(\d+)(?=_)", name.removeprefix("test"))}
    assert documented <= tested, f"documented but not tested: {documented - tested}"
    assert tested <= documented, f"tested but not documented: {tested - documented}"
    from mix import errors

    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_") and isinstance(v, int)}
    codes |= {code for code, _text in errors.EXIT_CODES}
    assert codes <= documented, f"in mix.errors but not documented: {codes - documented}"
