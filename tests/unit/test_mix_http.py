"""mix against a repository served over HTTP on 127.0.0.1: end to end, and servers that
fail (404, 500, stall, trickle) give a clear error within a bounded time."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from mixhelpers import World

from mix.cli import main


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Fail500(Quiet):
    hits = 0

    def do_GET(self) -> None:
        Fail500.hits += 1
        self.send_error(500, "broken")


class Counting(Quiet):
    """Serves the repository and records every path asked for."""

    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Counting.paths.append(self.path)
        super().do_GET()


class Trickle(Quiet):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(200):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.3)


def serve(handler: Any) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libz", "1.3-r0", files={"/usr/lib/libz.so.1": "z" * 5000})
    w.pkg("curl", "8.0-r1", files={"/usr/bin/curl": "c" * 5000}, dependencies=["libz>=1.3"])
    w.sign()
    return w


def mix(w: World, url: str, *args: str) -> tuple[int, float]:
    t0 = time.monotonic()
    rc = main(["--root", str(w.root), "--repo", url, "--keys-dir", str(w.keys_dir),
               "--timeout", "1", "-y", *args])
    return rc, time.monotonic() - t0


def test_install_over_http(w: World, capsys: Any) -> None:
    handler = functools.partial(Quiet, directory=str(w.repo))
    for url in serve(handler):
        rc, _ = mix(w, url, "install", "curl")
        assert rc == 0, capsys.readouterr().err
    assert w.installed() == {"curl": "8.0-r1", "libz": "1.3-r0"}
    assert (w.root / "usr/bin/curl").read_text() == "c" * 5000
    cached = sorted(p.name for p in (w.root / "var/cache/mix/packages").iterdir())
    assert cached == ["curl-8.0-r1.noarch.mixpkg", "libz-1.3-r0.noarch.mixpkg"]


def test_http_package_with_wrong_hash_is_refused(w: World, capsys: Any) -> None:
    (w.repo / "curl-8.0-r1.noarch.mixpkg").write_bytes(b"\x1f\x8b" + b"evil" * 100)
    handler = functools.partial(Quiet, directory=str(w.repo))
    for url in serve(handler):
        rc, _ = mix(w, url, "install", "curl")
    assert rc == 4 and "does not match the signed index" in capsys.readouterr().err
    assert w.installed() == {}
    assert not list((w.root / "var/cache/mix/packages").glob("curl*"))


def test_404_fails_at_once(w: World, capsys: Any) -> None:
    handler = functools.partial(Quiet, directory=str(w.repo))
    for url in serve(handler):
        rc, took = mix(w, url + "/nowhere", "update")
    err = capsys.readouterr().err
    assert rc == 6 and "HTTP 404" in err and took < 3


def test_500_is_retried_then_fails(w: World, capsys: Any) -> None:
    Fail500.hits = 0
    for url in serve(Fail500):
        rc, took = mix(w, url, "update")
    err = capsys.readouterr().err
    assert rc == 6 and "after 4 attempts" in err and "HTTP 500" in err
    assert Fail500.hits == 4 and took < 15


def test_stalled_server_times_out(w: World, capsys: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # accepts connections (kernel backlog) but never answers
    try:
        rc, took = mix(w, f"http://127.0.0.1:{sock.getsockname()[1]}", "update")
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert rc == 6 and "cannot download" in err and took < 15


def test_trickling_server_is_bounded(w: World, capsys: Any) -> None:
    for url in serve(Trickle):
        rc, took = mix(w, url, "update")
    err = capsys.readouterr().err
    assert rc == 6 and took < 15, err


def test_search_with_a_stale_search_index_fetches_each_index_once(w: World, capsys: Any) -> None:
    """With --repo, search fetches the index; when no search index is fresh yet it falls
    back to the solver, which must reuse the repositories already fetched, not fetch them
    again."""
    Counting.paths = []
    handler = functools.partial(Counting, directory=str(w.repo))
    for url in serve(handler):
        rc, _ = mix(w, url, "search", "curl")  # first search: nothing stored yet
        first = list(Counting.paths)
        w.pkg("curl", "8.1-r0", files={"/usr/bin/curl": "c" * 5000})
        w.sign()
        Counting.paths = []
        rc2, _ = mix(w, url, "search", "curl")  # changed index: the search index is stale
        second = list(Counting.paths)
    out = capsys.readouterr().out
    assert rc == rc2 == 0
    # the version install would pick (--all-versions lists the others)
    assert out.splitlines() == ["curl 8.0-r1 - the curl package",
                                "curl 8.1-r0 - the curl package"]
    assert first == second == ["/index.json", "/index.json.sig"]


def test_update_with_repo_fetches_each_index_once(w: World, capsys: Any) -> None:
    Counting.paths = []
    handler = functools.partial(Counting, directory=str(w.repo))
    for url in serve(handler):
        rc, _ = mix(w, url, "update")
    assert rc == 0, capsys.readouterr().err
    assert Counting.paths == ["/index.json", "/index.json.sig"]
    assert sorted(p.name for p in w.root.glob("var/lib/mix/repos/*/index*.solv")) == [
        "index.search.solv", "index.solv"]
