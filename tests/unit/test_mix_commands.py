"""The commands users of a package manager reach for: hold/unhold, mark, history, --version,
install --download-only."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World
from test_mix_cache import Ranges
from test_mix_http import serve

from mix.cli import main


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libc", files={"/usr/lib/libc.so.6": "libc"})
    w.pkg("tool", files={"/usr/bin/tool": "tool 1.0"}, dependencies=["libc"])
    w.pkg("app", files={"/usr/bin/app": "app"}, dependencies=["tool"])
    w.sign()
    return w


def test_hold_keeps_a_package_out_of_upgrades(w: World, capsys: Any) -> None:
    assert w.mix("install", "app", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("hold", "tool", capsys=capsys)
    assert rc == 0 and "held: tool" in out
    w.pkg("tool", "1.1", files={"/usr/bin/tool": "tool 1.1"}, dependencies=["libc"])
    w.sign()
    rc, out, err = w.mix("upgrade", capsys=capsys)
    assert rc == 0, err
    assert "held, not upgraded: tool" in out and w.installed()["tool"] == "1.0"
    rc, _, err = w.mix("upgrade", "tool", capsys=capsys)
    assert rc == 3 and "tool is held" in err and "mix unhold tool" in err
    rc, _, err = w.mix("remove", "--cascade", "tool", capsys=capsys)
    assert rc == 3 and "tool is held" in err
    rc, _, err = w.mix("install", "tool=1.1", capsys=capsys)
    assert rc == 3 and "tool is held" in err
    rc, out, _ = w.mix("list", "--held", capsys=capsys)
    assert out == "tool 1.0 [dependency] [held]\n"
    rc, out, _ = w.mix("install", "tool", capsys=capsys)  # changes no file: not refused
    assert rc == 0 and "already installed" in out  # (and the mark: now explicit)
    rc, _, err = w.mix("unhold", "libc", capsys=capsys)
    assert rc == 9 and "libc is not held" in err
    assert w.mix("unhold", "tool", capsys=capsys)[0] == 0
    assert w.mix("upgrade", capsys=capsys)[0] == 0
    assert w.installed()["tool"] == "1.1"
    rc, _, err = w.mix("hold", "ghost", capsys=capsys)
    assert rc == 9 and "ghost is not installed" in err


def test_mark_explicit_and_dependency(w: World, capsys: Any) -> None:
    assert w.mix("install", "app", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("mark", "--explicit", "tool", capsys=capsys)
    assert rc == 0 and "marked explicit: tool" in out
    assert w.mix("remove", "app", capsys=capsys)[0] == 0
    assert w.installed() == {"tool": "1.0", "libc": "1.0"}  # tool stays, and what it needs
    assert w.mix("install", "app", capsys=capsys)[0] == 0
    assert w.mix("mark", "--dependency", "tool", capsys=capsys)[0] == 0
    assert w.mix("remove", "app", capsys=capsys)[0] == 0
    assert w.installed() == {}
    with pytest.raises(SystemExit):
        w.mix("mark", "tool")  # one of --explicit, --dependency is required


def test_history_records_each_transaction(w: World, capsys: Any) -> None:
    assert w.mix("install", "app", capsys=capsys)[0] == 0
    assert w.mix("remove", "app", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("--json", "history", capsys=capsys)
    first, second = json.loads(out)
    assert first["command"] == "mix install app"  # no --root, --repo: the host's paths
    assert [(c["action"], c["name"], c["reason"]) for c in first["changes"]] == [
        ("install", "libc", "dependency"), ("install", "tool", "dependency"),
        ("install", "app", "explicit")]
    assert [(c["action"], c["name"], c["reason"]) for c in second["changes"]] == [
        ("remove", "app", "requested"), ("remove", "tool", "orphan"),
        ("remove", "libc", "orphan")]
    assert second["time"] >= first["time"] > 0 and second["id"] > first["id"]
    rc, out, _ = w.mix("history", capsys=capsys)
    assert rc == 0 and "  mix remove app\n" in out and "        install   app 1.0\n" in out
    assert w.mix("--simulate", "install", "app", capsys=capsys)[0] == 0
    assert len(json.loads(w.mix("--json", "history", capsys=capsys)[1])) == 2


def test_version(capsys: Any) -> None:
    from mix import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"mix {__version__}\n"


def test_install_download_only(w: World, capsys: Any) -> None:
    Ranges.log = []
    for url in serve(functools.partial(Ranges, directory=str(w.repo))):
        cli = ["--root", str(w.root), "--repo", url, "--keys-dir", str(w.keys_dir), "-y"]
        assert main([*cli, "install", "--download-only", "app"]) == 0
        out = capsys.readouterr().out
        assert "downloaded 3 packages" in out and "nothing else was changed" in out
        assert w.installed() == {} and not (w.root / "usr").exists()
        cache = w.root / "var/cache/mix/packages"
        assert sorted(p.name for p in cache.iterdir()) == [
            "app-1.0.noarch.mixpkg", "libc-1.0.noarch.mixpkg", "tool-1.0.noarch.mixpkg"]
        downloads = [p for p, _r, _n in Ranges.log if p.endswith(".mixpkg")]
        assert main([*cli, "install", "app"]) == 0  # from the cache: no download
        assert [p for p, _r, _n in Ranges.log if p.endswith(".mixpkg")] == downloads
    assert w.installed() == {"app": "1.0", "tool": "1.0", "libc": "1.0"}


@pytest.fixture
def two(tmp_path: Path) -> World:
    """Two configured repositories: main (priority 10) has tool 1.0, extra (0) tool 2.0."""
    import shutil

    from mixhelpers import make_pkg, sign_repo

    w = World(tmp_path)
    w.pkg("glibc", files={"/usr/lib/libc.so.6": "libc"}, provides=["c-runtime", "libc.so.6"])
    w.pkg("tool", files={"/usr/bin/tool": "tool 1.0"}, dependencies=["c-runtime"])
    w.pkg("app", files={"/usr/bin/app": "app"}, dependencies=["tool"])
    w.sign()
    extra = tmp_path / "extra"
    extra.mkdir()
    make_pkg(tmp_path, extra, "tool", "2.0", files={"/usr/bin/tool": "tool 2.0"})
    sign_repo(extra, w.key)
    etc = w.root / "etc/mix"
    (etc / "keys").mkdir(parents=True)
    shutil.copy(w.pub, etc / "keys")
    (etc / "repositories").write_text(f"file://{w.repo} priority=10 name=main\n"
                                      f"file://{extra} name=extra\n")
    assert main(["--root", str(w.root), "update"]) == 0
    return w


def run(w: World, capsys: Any, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["--root", str(w.root), "-y", *args])
    return rc, capsys.readouterr().out


def test_info_shows_the_candidate_and_what_requires_a_package(two: World, capsys: Any) -> None:
    _rc, out = run(two, capsys, "--json", "info", "tool")
    info = json.loads(out)
    assert info["version"] == info["candidate_version"] == "1.0"  # main's, not extra's 2.0
    assert info["available_versions"] == ["1.0", "2.0"] and info["installed_version"] is None
    _rc, out = run(two, capsys, "info", "tool")
    assert "Candidate:           1.0\n" in out
    assert run(two, capsys, "install", "app")[0] == 0
    assert json.loads(run(two, capsys, "--json", "info", "tool")[1])["required_by"] == ["app"]
    _rc, out = run(two, capsys, "info", "glibc")  # required through a name it provides
    assert "Required by:         tool\n" in out
    assert run(two, capsys, "hold", "tool")[0] == 0
    assert json.loads(run(two, capsys, "--json", "info", "tool")[1])["held"] is True


def test_info_and_search_find_virtual_names(two: World, capsys: Any) -> None:
    rc, out = run(two, capsys, "info", "c-runtime")
    assert rc == 0 and "c-runtime is a virtual name, provided by:\n  glibc 1.0 (main)\n" in out
    _rc, out = run(two, capsys, "--json", "info", "libc.so.6")
    assert json.loads(out)["provided_by"] == [{"name": "glibc", "version": "1.0",
                                               "repo": "main"}]
    rc, out = run(two, capsys, "search", "runtime")
    assert rc == 0 and out == "glibc 1.0 - the glibc package\n"
    for light in two.root.glob("var/lib/mix/**/index.search.solv"):
        light.unlink()  # the solver's search finds the same
    rc, out = run(two, capsys, "search", "runtime")
    assert rc == 0 and out == "glibc 1.0 - the glibc package\n"


def test_search_and_list_available_show_the_candidate(two: World, capsys: Any) -> None:
    _rc, out = run(two, capsys, "search", "tool")
    assert out == "tool 1.0 - the tool package\n"
    _rc, out = run(two, capsys, "search", "--all-versions", "tool")
    assert out == "tool 1.0 - the tool package\ntool 2.0 - the tool package\n"
    _rc, out = run(two, capsys, "--json", "list", "--available")
    assert {(r["name"], r["version"], r["repo"]) for r in json.loads(out)} == {
        ("app", "1.0", "main"), ("glibc", "1.0", "main"), ("tool", "1.0", "main")}
    _rc, out = run(two, capsys, "list", "--available", "--all-versions")
    assert "tool 1.0\ntool 2.0\n" in out


def test_provides_finds_the_package_that_ships_a_path_or_a_name(w: World, capsys: Any) -> None:
    from mix.index import scan_repo, write_index

    files: dict[str, list[str]] = {}
    write_index(w.repo, scan_repo(w.repo, files), w.key, files=files)  # repo index --files
    assert "files" in json.loads((w.repo / "index.json").read_bytes())
    rc, out, err = w.mix("provides", "/usr/bin/tool", capsys=capsys)
    assert rc == 0, err
    assert out.startswith("/usr/bin/tool: tool 1.0 (") and out.count("\n") == 1
    rc, out, _ = w.mix("--json", "provides", "/usr/lib/libc.so.6", capsys=capsys)
    assert [r["name"] for r in json.loads(out)] == ["libc"]
    rc, _, err = w.mix("provides", "/usr/bin/nothing", capsys=capsys)
    assert rc == 9
    rc, out, _ = w.mix("provides", "libc", capsys=capsys)
    assert rc == 0 and out.startswith("libc: libc 1.0 (")
    # a file list that is not the signed one is refused
    import gzip

    (w.repo / "files.json.gz").write_bytes(gzip.compress(b'{"files": {}}'))
    for stored in w.root.glob("var/lib/mix/repos/*/files.json.gz"):
        stored.unlink()
    rc, _, err = w.mix("provides", "/usr/bin/tool", capsys=capsys)
    assert rc == 4 and "does not match the signed index" in err


def test_provides_needs_file_lists_and_says_so(w: World, capsys: Any) -> None:
    rc, _, err = w.mix("provides", "/usr/bin/tool", capsys=capsys)
    assert rc == 9 and "mix repo index --files" in err
    assert main(["repo", "index", str(w.repo), "--key", str(w.key), "--files"]) == 0
    assert (w.repo / "files.json.gz").is_file()
    capsys.readouterr()
    rc, out, err = w.mix("provides", "/usr/bin/tool", capsys=capsys)
    assert rc == 0 and out.startswith("/usr/bin/tool: tool 1.0 ("), err
