"""The .solv cache (mix.solvcache), search (mix.search) and entry validation (mix.solvables)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mix.search import SearchIndex, search_index_path
from mix.solvables import IndexEntryError
from mix.solver import Request, Solver

LISTS = {
    "dependencies": [],
    "provides": [],
    "conflicts": [],
    "replaces": [],
    "license": "",
    "url": "",
}

# As in a signed index: every list and text field present (mix.index.write_index fills them in).
ENTRIES: list[dict[str, Any]] = [
    {
        "name": "nginx",
        "version": "1.24-r1",
        "arch": "x86_64",
        "dependencies": ["libpcre>=8", "libc | musl"],
        "provides": ["httpd"],
        "description": "Small, fast HTTP server",
        "size": 1234,
        "sha256": "ab" * 32,
        "filename": "nginx-1.24-r1.x86_64.mixpkg",
        "conflicts": ["apache2<2.4-r1", "lighttpd!=1.4"],
        "replaces": ["nginx-light"],
        "license": "BSD-2-Clause",
        "url": "",
        "installed_size": 4096,
        "build_date": 1767225600,
        "repo": "main",
        "origin": {"recipe": "packages/nginx", "tags": ["web"]},
    },
    {"name": "libpcre", "version": "8.45", "arch": "x86_64", "description": "Regex library"},
    {"name": "libc", "version": "2.36", "arch": "x86_64", "description": "C library"},
    {"name": "musl", "version": "1.2", "arch": "x86_64", "description": "Another C LIBRARY"},
]
ENTRIES = [{**LISTS, **e} for e in ENTRIES]


def _names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries]


def test_cache_round_trip_gives_the_same_plan_and_entries(tmp_path: Path) -> None:
    cache = tmp_path / "main.solv"
    built = Solver()
    built.add_repo("main", ENTRIES, cache=cache)
    assert cache.is_file()
    loaded = Solver()
    loaded.add_repo("main", None, cache=cache)
    a = built.solve(Request(install=["nginx"]))
    b = loaded.solve(Request(install=["nginx"]))
    assert a.install == b.install
    assert sorted(_names(b.install)) == ["libc", "libpcre", "nginx"]
    assert _names(b.install)[-1] == "nginx"
    assert b.install[-1]["sha256"] == "ab" * 32
    assert b.install[-1]["description"] == "Small, fast HTTP server"


def test_fresh_cache_is_used_without_reading_the_index(tmp_path: Path) -> None:
    cache, index = tmp_path / "main.solv", tmp_path / "index.json"
    index.write_text("{}")
    Solver().add_repo("main", ENTRIES, cache=cache)
    os.utime(index, (1_000_000, 1_000_000))

    def must_not_load() -> list[dict[str, Any]]:
        raise AssertionError("the index was parsed although the cache is fresh")

    s = Solver()
    s.add_repo("main", must_not_load, cache=cache, index=index)
    assert _names(s.solve(Request(install=["libc"])).install) == ["libc"]


def test_stale_cache_is_rebuilt_from_the_index(tmp_path: Path) -> None:
    cache, index = tmp_path / "main.solv", tmp_path / "index.json"
    Solver().add_repo("main", ENTRIES[:1], cache=cache)
    index.write_text("{}")
    future = cache.stat().st_mtime + 100
    os.utime(index, (future, future))
    calls = []

    def load() -> list[dict[str, Any]]:
        calls.append(1)
        return ENTRIES

    s = Solver()
    s.add_repo("main", load, cache=cache, index=index)
    assert calls == [1]
    assert _names(s.solve(Request(install=["musl"])).install) == ["musl"]
    again = Solver()
    again.add_repo("main", None, cache=cache)  # the rebuilt cache now holds musl
    assert _names(again.solve(Request(install=["musl"])).install) == ["musl"]


def test_foreign_or_corrupt_cache_is_not_trusted(tmp_path: Path) -> None:
    cache = tmp_path / "main.solv"
    cache.write_bytes(b"not a solv file")
    with pytest.raises(IndexEntryError, match="run 'mix update'"):
        Solver().add_repo("main", None, cache=cache)
    s = Solver()
    s.add_repo("main", lambda: ENTRIES, cache=cache)
    assert _names(s.solve(Request(install=["libc"])).install) == ["libc"]


def test_search_matches_names_and_descriptions_case_insensitively(tmp_path: Path) -> None:
    cache = tmp_path / "main.solv"
    Solver().add_repo("main", ENTRIES, cache=cache)
    s = Solver()
    s.add_repo("main", None, cache=cache)
    s.set_installed([dict(ENTRIES[2], reason="explicit")])
    assert _names(s.search("c library")) == ["libc", "musl"]
    assert _names(s.search("NGINX")) == ["nginx"]
    assert s.search("nothing-like-this") == []


def test_first_alternative_preference_survives_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "main.solv"
    entries = [
        {"name": "app", "version": "1", "dependencies": ["zlib-ng | zlib"]},
        {"name": "zlib", "version": "1"},
        {"name": "zlib-ng", "version": "1"},
    ]
    Solver().add_repo("main", entries, cache=cache)
    s = Solver()
    s.add_repo("main", None, cache=cache)
    assert _names(s.solve(Request(install=["app"])).install) == ["zlib-ng", "app"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "bad", "version": "1-2-3"}, "package bad 1-2-3: invalid version '1-2-3'"),
        ({"name": "bad", "version": "1", "dependencies": ["x>="]}, "invalid dependency 'x>='"),
        ({"version": "1"}, "entry without name or version"),
    ],
)
def test_bad_entries_are_refused_naming_repository_and_package(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(IndexEntryError) as info:
        Solver().add_repo("main", [entry])
    assert message in str(info.value)
    assert "repository main" in str(info.value)


def test_search_index_beside_the_cache_finds_what_the_solver_finds(tmp_path: Path) -> None:
    cache, index = tmp_path / "index.solv", tmp_path / "index.json"
    index.write_text("{}")
    os.utime(index, (1_000_000, 1_000_000))
    assert SearchIndex.load(cache, index) is None  # nothing written yet
    Solver().add_repo("main", ENTRIES, cache=cache)
    assert search_index_path(cache) == tmp_path / "index.search.solv"
    light = SearchIndex.load(cache, index)
    assert light is not None
    full = Solver()
    full.add_repo("main", None, cache=cache)
    for term in ("c library", "NGINX", "regex", "nothing-like-this"):
        assert _names(light.search(term)) == _names(full.search(term))
    assert light.search("nginx") == [
        {
            "name": "nginx",
            "version": "1.24-r1",
            "arch": "x86_64",
            "description": "Small, fast HTTP server",
        }
    ]
    later = search_index_path(cache).stat().st_mtime + 100
    os.utime(index, (later, later))
    assert SearchIndex.load(cache, index) is None  # stale: the index is newer
