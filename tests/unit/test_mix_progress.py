"""Progress on a terminal: one overall line (items, bytes, speed, time left) for the
downloads and one for the extraction; nothing when stderr is not a terminal."""

from __future__ import annotations

import functools
import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mixhelpers import World
from test_mix_cache import Ranges
from test_mix_http import serve

from mix.progress import Progress

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_line_counts_items_and_bytes_with_speed_and_time_left() -> None:
    out = io.StringIO()
    bar = Progress("downloading", 2, 4 << 20, enabled=True, stream=out)
    bar.next_item("curl")
    time.sleep(0.15)
    bar.advance(1 << 20)
    line = out.getvalue().rsplit("\r\033[K", 1)[1]
    assert line.startswith("downloading [1/2]   25% 1.0 MiB/4.0 MiB  ")
    assert "/s  ETA 0:" in line and line.endswith("  curl")
    bar.next_item("libz")
    bar.close()
    assert out.getvalue().endswith("\r\033[K")
    quiet = io.StringIO()
    off = Progress("extracting", 1, 10, stream=quiet)  # a StringIO is no terminal
    off.next_item("x")
    off.advance(10)
    off.close()
    assert quiet.getvalue() == ""


def test_install_on_a_terminal_draws_both_lines(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.pkg("libz", files={"/usr/lib/libz.so.1": os.urandom(200_000)})
    w.pkg("curl", files={"/usr/bin/curl": os.urandom(200_000)}, dependencies=["libz"])
    w.sign()
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        main_fd, tty_fd = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mix", "--root", str(w.root), "--repo", url, "--keys-dir",
             str(w.keys_dir), "-y", "install", "curl"],
            env=dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="120"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=tty_fd)
        os.close(tty_fd)
        seen = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=60) == 0, seen
        os.close(main_fd)
    text = seen.decode(errors="replace")
    assert "downloading [1/2]" in text and "downloading [2/2]" in text
    assert "extracting [2/2]" in text and "ETA" in text and "/s" in text
    assert w.installed() == {"curl": "1.0", "libz": "1.0"}


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: Any) -> None:
    w = World(tmp_path)
    w.pkg("a", files={"/a": "a"})
    w.sign()
    rc, _, err = w.mix("install", "a", capsys=capsys)
    assert rc == 0 and "\r" not in err and "extracting" not in err
