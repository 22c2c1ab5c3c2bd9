"""The download cache: interrupted downloads resumed (HTTP ranges) or cleaned, only the
installed packages' files kept, and `mix cache clean`."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from mixhelpers import World
from test_mix_http import Quiet, serve

from mix.cli import main


class Ranges(Quiet):
    """Serves the repository, honouring "Range: bytes=N-", and records each request as
    (path, range header, bytes sent)."""

    log: ClassVar[list[tuple[str, str, int]]] = []

    def do_GET(self) -> None:
        path = Path(self.directory) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        asked = self.headers.get("Range", "")
        m = re.fullmatch(r"bytes=(\d+)-", asked)
        start = int(m.group(1)) if m else 0
        if start >= len(data) and m:
            self.send_error(416)
            return
        if m:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        # logged before the body goes out: a client that has it may look at the log at once
        Ranges.log.append((self.path, asked, len(body)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libz", "1.3-r0", files={"/usr/lib/libz.so.1": os.urandom(50_000)})
    w.pkg("curl", "8.0-r1", files={"/usr/bin/curl": os.urandom(50_000)},
          dependencies=["libz>=1.3"])
    w.sign()
    Ranges.log = []
    return w


def mix(w: World, url: str, *args: str) -> int:
    return main(["--root", str(w.root), "--repo", url, "--keys-dir", str(w.keys_dir),
                 "--timeout", "2", "-y", *args])


def cache(w: World) -> Path:
    return w.root / "var/cache/mix/packages"


def cached(w: World) -> list[str]:
    return sorted(p.name for p in cache(w).iterdir()) if cache(w).exists() else []


def test_an_interrupted_download_is_resumed(w: World, capsys: Any) -> None:
    data = (w.repo / "curl-8.0-r1.noarch.mixpkg").read_bytes()
    cache(w).mkdir(parents=True)
    half = len(data) // 2
    (cache(w) / ".curl-8.0-r1.noarch.mixpkg.part").write_bytes(data[:half])
    (cache(w) / ".curl-8.0-r1.noarch.mixpkg.part4242").write_bytes(data[:1000])  # older mix
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        assert mix(w, url, "install", "curl") == 0, capsys.readouterr().err
    assert ("/curl-8.0-r1.noarch.mixpkg", f"bytes={half}-", len(data) - half) in Ranges.log
    assert w.installed() == {"curl": "8.0-r1", "libz": "1.3-r0"}
    assert cached(w) == ["curl-8.0-r1.noarch.mixpkg", "libz-1.3-r0.noarch.mixpkg"]


def test_a_part_that_is_not_the_start_of_the_file_is_downloaded_again(
        w: World, capsys: Any) -> None:
    cache(w).mkdir(parents=True)
    (cache(w) / ".curl-8.0-r1.noarch.mixpkg.part").write_bytes(b"\0" * 3000)
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        assert mix(w, url, "install", "curl") == 0, capsys.readouterr().err
    sent = [(r, n) for p, r, n in Ranges.log if p == "/curl-8.0-r1.noarch.mixpkg"]
    size = (w.repo / "curl-8.0-r1.noarch.mixpkg").stat().st_size
    assert sent == [("bytes=3000-", size - 3000), ("", size)]
    assert cached(w) == ["curl-8.0-r1.noarch.mixpkg", "libz-1.3-r0.noarch.mixpkg"]


class CutOff(Ranges):
    """Serves the index; of a package, only its first 1000 bytes, then hangs up."""

    def do_GET(self) -> None:
        if not self.path.endswith(".mixpkg"):
            super().do_GET()
            return
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:1000])


def test_a_failed_download_keeps_its_part_for_the_next_run(w: World, capsys: Any) -> None:
    for url in serve(functools.partial(CutOff, directory=str(w.repo))):
        assert mix(w, url, "install", "curl") == 6
    parts = [p for p in cached(w) if p.endswith(".part")]
    assert parts == [".libz-1.3-r0.noarch.mixpkg.part"]  # the first one; then mix stopped
    assert (cache(w) / parts[0]).stat().st_size == 1000
    Ranges.log = []
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        assert mix(w, url, "install", "curl") == 0
    asked = {p: r for p, r, _n in Ranges.log if p.endswith(".mixpkg")}
    assert asked == {"/libz-1.3-r0.noarch.mixpkg": "bytes=1000-", "/curl-8.0-r1.noarch.mixpkg": ""}
    assert cached(w) == ["curl-8.0-r1.noarch.mixpkg", "libz-1.3-r0.noarch.mixpkg"]


def test_the_cache_keeps_only_installed_packages(w: World, capsys: Any) -> None:
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        assert mix(w, url, "install", "curl") == 0
        assert cached(w) == ["curl-8.0-r1.noarch.mixpkg", "libz-1.3-r0.noarch.mixpkg"]
        w.pkg("curl", "8.1-r0", files={"/usr/bin/curl": "new"}, dependencies=["libz>=1.3"])
        w.sign()
        assert mix(w, url, "upgrade") == 0
        assert cached(w) == ["curl-8.1-r0.noarch.mixpkg", "libz-1.3-r0.noarch.mixpkg"]
        assert mix(w, url, "remove", "curl") == 0
        assert cached(w) == []  # libz went as an orphan


def test_cache_clean(w: World, capsys: Any) -> None:
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        assert mix(w, url, "install", "libz") == 0
        (cache(w) / ".curl-8.0-r1.noarch.mixpkg.part").write_bytes(b"x" * 100)
        (cache(w) / "curl-8.0-r1.noarch.mixpkg").write_bytes(
            (w.repo / "curl-8.0-r1.noarch.mixpkg").read_bytes())
        capsys.readouterr()
        assert mix(w, url, "--simulate", "cache", "clean") == 0
        out = capsys.readouterr().out
        assert "would remove" in out and "2 files" in out and len(cached(w)) == 3
        assert mix(w, url, "cache", "clean") == 0
        assert cached(w) == ["libz-1.3-r0.noarch.mixpkg"]
        assert mix(w, url, "cache", "clean", "--all") == 0
        assert cached(w) == []
        assert "1 files, freed" in capsys.readouterr().out
