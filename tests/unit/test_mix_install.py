"""mix install / remove / upgrade on a root, end to end through the CLI (in-process)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from mixhelpers import World

BUSYBOX = shutil.which("busybox")


@pytest.fixture(params=["gzip", "zstd"])
def w(tmp_path: Path, request: pytest.FixtureRequest) -> World:
    """Every test runs with gzip packages and with zstd ones (package format 2)."""
    return World(tmp_path, request.param)


def base_repo(w: World) -> None:
    w.pkg("libc", "2.36-r1", files={"/usr/lib/libc.so.6": "libc"}, provides=["libc.so.6"])
    w.pkg("tool", "1.0", files={"/usr/bin/tool": "tool v1", "/etc/tool.conf": "a=1\n"},
          dependencies=["libc.so.6"])
    w.pkg("app", "1.0", files={"/usr/bin/app": "app"}, dependencies=["tool>=1.0"])
    w.sign()


def test_install_pulls_dependencies_and_records_reasons(w: World, capsys) -> None:
    base_repo(w)
    rc, out, _ = w.mix("install", "app", capsys=capsys)
    assert rc == 0
    assert "install  libc 2.36-r1 (dependency)" in out
    assert w.installed() == {"app": "1.0", "tool": "1.0", "libc": "2.36-r1"}
    assert (w.root / "usr/bin/app").read_text() == "app"
    assert (w.root / "usr/bin/app").stat().st_mode & 0o777 == 0o755
    rc, out, _ = w.mix("--json", "list", capsys=capsys)
    reasons = {r["name"]: r["reason"] for r in json.loads(out)}
    assert reasons == {"app": "explicit", "tool": "dependency", "libc": "dependency"}
    assert w.mix("verify", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("owner", "/usr/bin/tool", capsys=capsys)
    assert "owned by tool" in out
    rc, out, _ = w.mix("--json", "files", "tool", capsys=capsys)
    assert {f["path"] for f in json.loads(out)} >= {"/usr/bin/tool", "/etc/tool.conf"}


def test_install_simulate_changes_nothing(w: World, capsys) -> None:
    base_repo(w)
    rc, out, _ = w.mix("--simulate", "--json", "install", "app", capsys=capsys)
    assert rc == 0
    assert [p["name"] for p in json.loads(out)["plan"]] == ["libc", "tool", "app"]
    assert w.installed() == {}
    assert not (w.root / "usr").exists()


def test_remove_refuses_to_break_dependents_then_cascades(w: World, capsys) -> None:
    base_repo(w)
    assert w.mix("install", "app")[0] == 0
    rc, _, err = w.mix("remove", "tool", capsys=capsys)
    assert rc == 3 and "app" in err
    assert w.installed() == {"app": "1.0", "tool": "1.0", "libc": "2.36-r1"}
    rc, _, _ = w.mix("remove", "--cascade", "tool", capsys=capsys)
    assert rc == 0
    assert w.installed() == {}
    assert set(w.tree()) <= {"/var", "/var/lib", "/var/lib/mix"}


def test_remove_drops_orphaned_dependencies(w: World, capsys) -> None:
    base_repo(w)
    assert w.mix("install", "app")[0] == 0
    assert w.mix("install", "libc")[0] == 0  # now explicit: stays
    rc, _out, _ = w.mix("remove", "app", capsys=capsys)
    assert rc == 0
    assert w.installed() == {"libc": "2.36-r1"}
    assert not (w.root / "usr/bin/tool").exists()


def test_upgrade_keeps_changed_config_and_writes_mixnew(w: World, capsys) -> None:
    base_repo(w)
    assert w.mix("install", "app")[0] == 0
    (w.root / "etc/tool.conf").write_text("a=admin\n")
    w.pkg("tool", "1.1", files={"/usr/bin/tool": "tool v1.1", "/etc/tool.conf": "a=2\n",
                                "/usr/share/tool/new": "n"}, dependencies=["libc.so.6"])
    w.sign()
    rc, out, _ = w.mix("list", "--upgradable", capsys=capsys)
    assert "tool 1.0 -> 1.1" in out
    rc, out, _ = w.mix("upgrade", capsys=capsys)
    assert rc == 0, out
    assert "upgrade  tool 1.0 -> 1.1" in out and "/etc/tool.conf.mixnew" in out
    assert (w.root / "etc/tool.conf").read_text() == "a=admin\n"
    assert (w.root / "etc/tool.conf.mixnew").read_text() == "a=2\n"
    assert (w.root / "usr/bin/tool").read_text() == "tool v1.1"
    assert w.installed()["tool"] == "1.1"
    rc, out, _ = w.mix("verify", capsys=capsys)
    assert rc == 0 and "modified configuration" in out


def test_upgrade_replaces_unchanged_config_and_deletes_dropped_files(w: World, capsys) -> None:
    w.pkg("tool", "1.0", files={"/etc/tool.conf": "a=1\n", "/usr/bin/old": "o"})
    w.sign()
    assert w.mix("install", "tool")[0] == 0
    w.pkg("tool", "2.0", files={"/etc/tool.conf": "a=2\n"})
    w.sign()
    assert w.mix("upgrade", "tool")[0] == 0
    assert (w.root / "etc/tool.conf").read_text() == "a=2\n"
    assert not (w.root / "etc/tool.conf.mixnew").exists()
    assert not (w.root / "usr/bin/old").exists() and not (w.root / "usr").exists()


def test_file_conflict_refused_unless_replaces(w: World, capsys) -> None:
    w.pkg("a", files={"/usr/bin/x": "a"})
    w.pkg("b", files={"/usr/bin/x": "b"})
    w.pkg("c", files={"/usr/bin/x": "c"}, replaces=["a"])
    w.sign()
    assert w.mix("install", "a")[0] == 0
    rc, _, err = w.mix("install", "b", capsys=capsys)
    assert rc == 7 and "already owned by a" in err
    assert (w.root / "usr/bin/x").read_text() == "a" and w.installed() == {"a": "1.0"}
    rc, _, err = w.mix("install", "c", capsys=capsys)
    assert rc == 0, err
    assert (w.root / "usr/bin/x").read_text() == "c"
    rc, out, _ = w.mix("owner", "/usr/bin/x", capsys=capsys)
    assert out.strip() == "/usr/bin/x is owned by c"


def test_unowned_file_on_disk_is_not_overwritten(w: World, capsys) -> None:
    w.pkg("a", files={"/usr/bin/x": "a"})
    w.sign()
    (w.root / "usr/bin").mkdir(parents=True)
    (w.root / "usr/bin/x").write_text("mine")
    rc, _, err = w.mix("install", "a", capsys=capsys)
    assert rc == 7 and "no package owns it" in err
    assert (w.root / "usr/bin/x").read_text() == "mine"


def test_dependency_cycle_installs(w: World) -> None:
    w.pkg("p", files={"/p": "p"}, dependencies=["q"])
    w.pkg("q", files={"/q": "q"}, dependencies=["p"])
    w.sign()
    assert w.mix("install", "p")[0] == 0
    assert w.installed() == {"p": "1.0", "q": "1.0"}


def test_missing_dependency_names_the_chain(w: World, capsys) -> None:
    w.pkg("top", files={"/t": "t"}, dependencies=["mid"])
    w.pkg("mid", files={"/m": "m"}, dependencies=["libghost>=2"])
    w.sign()
    rc, _, err = w.mix("install", "top", capsys=capsys)
    assert rc == 3
    assert "libghost" in err and "mid" in err and "top" in err
    assert w.installed() == {}


def test_tampered_package_refused_state_unchanged(w: World, capsys) -> None:
    base_repo(w)
    pkg = w.repo / "app-1.0.noarch.mixpkg"
    data = bytearray(pkg.read_bytes())
    data[-20] ^= 0xFF
    pkg.write_bytes(bytes(data))
    rc, _, err = w.mix("install", "app", capsys=capsys)
    assert rc == 4 and "does not match the signed index" in err
    assert w.installed() == {} and not (w.root / "usr").exists()


def test_install_local_file_needs_allow_untrusted(w: World, capsys, tmp_path: Path) -> None:
    base_repo(w)
    from mixhelpers import make_pkg

    local = make_pkg(tmp_path, tmp_path / "local", "extra", compression=w.compression,
                     files={"/extra": "x"}, dependencies=["libc"])
    rc, _, err = w.mix("install", str(local), capsys=capsys)
    assert rc == 4 and "--allow-untrusted" in err
    rc, _, err = w.mix("install", "--allow-untrusted", str(local), capsys=capsys)
    assert rc == 0, err
    assert w.installed() == {"extra": "1.0", "libc": "2.36-r1"}


def test_symlinked_directories_resolve_inside_root(w: World) -> None:
    """Merged /usr: /lib -> usr/lib, files under /lib land in /usr/lib."""
    w.pkg("layout", files={"/usr/lib/.keep": "", "/lib": "->usr/lib", "/bin": "->/usr/bin",
                           "/usr/bin/.keep": ""})
    w.pkg("lib", files={"/lib/libx.so": "x", "/bin/x": "x"}, dependencies=["layout"])
    w.sign()
    assert w.mix("install", "lib")[0] == 0
    assert (w.root / "usr/lib/libx.so").read_text() == "x"
    assert (w.root / "usr/bin/x").read_text() == "x"
    assert os.readlink(w.root / "lib") == "usr/lib"


def test_symlink_leading_outside_root_is_not_written_through(w: World, capsys,
                                                            tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    depth = len(w.root.parts)
    (w.root / "evil").symlink_to("../" * depth + str(outside).lstrip("/"))
    (w.root / "abs").symlink_to(outside)
    w.pkg("victim", files={"/evil/pwned": "x"})
    w.pkg("victim2", files={"/abs/pwned": "x"})
    w.sign()
    rc, _, err = w.mix("install", "victim", capsys=capsys)
    assert rc == 7 and "leads outside the root" in err
    assert list(outside.iterdir()) == []
    assert "victim" not in w.installed()
    # An absolute target means the root's own path once the root is /: re-rooted.
    assert w.mix("install", "victim2")[0] == 0
    assert list(outside.iterdir()) == []
    assert (w.root / str(outside).lstrip("/") / "pwned").read_text() == "x"


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_scripts_run_chrooted_and_failing_pre_install_aborts(w: World, capsys) -> None:
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("good", files={"/etc/good": "g"}, dependencies=["sh"],
          scripts={"post-install": "#!/bin/sh\necho \"$MIX_PACKAGE $MIX_VERSION\" > /ran\n"})
    w.pkg("bad", files={"/usr/bin/bad": "b"}, dependencies=["sh"],
          scripts={"pre-install": "#!/bin/sh\necho refusing >&2\nexit 3\n"})
    w.sign()
    assert w.mix("install", "sh")[0] == 0
    (w.root / "bin/busybox").chmod(0o755)  # helper stages non-/bin/ files 0644; busybox is in /bin
    rc, _, err = w.mix("install", "good", capsys=capsys)
    assert rc == 0, err
    assert (w.root / "ran").read_text() == "good 1.0\n"
    before = w.tree()
    rc, _, err = w.mix("install", "bad", capsys=capsys)
    assert rc == 7 and "pre-install script failed with exit status 3" in err and "refusing" in err
    assert w.tree() == before and "bad" not in w.installed()
    assert w.mix("--no-scripts", "install", "bad")[0] == 0


def test_lock_refuses_a_second_writer(w: World, capsys) -> None:
    base_repo(w)
    from mix.lock import RootLock

    with RootLock(w.root / "var/lib/mix"):
        rc, _, err = w.mix("install", "app", capsys=capsys)
    assert rc == 5 and "another mix process" in err
    assert w.installed() == {}


def test_update_refuses_bad_indexes_and_keeps_the_previous_one(w: World, capsys) -> None:
    base_repo(w)
    etc = w.root / "etc/mix"
    (etc / "keys").mkdir(parents=True)
    shutil.copy(w.pub, etc / "keys")
    (etc / "repositories").write_text(f"# test\nfile://{w.repo} priority=5\n")
    cli = ["--root", str(w.root)]
    from mix.cli import main

    assert main([*cli, "update"]) == 0
    stored = next((w.root / "var/lib/mix/repos").glob("*/index.json"))
    good = stored.read_bytes()
    # unsigned
    sig = (w.repo / "index.json.sig").read_bytes()
    (w.repo / "index.json.sig").unlink()
    assert main([*cli, "update"]) == 4
    assert "is not signed" in capsys.readouterr().err
    (w.repo / "index.json.sig").write_bytes(sig)
    # altered after signing
    idx = (w.repo / "index.json").read_bytes()
    (w.repo / "index.json").write_bytes(idx.replace(b'"tool"', b'"t00l"'))
    assert main([*cli, "update"]) == 4
    assert "bad signature" in capsys.readouterr().err
    # expired
    w.sign(valid_days=-1)
    assert main([*cli, "update"]) == 4
    assert "expired" in capsys.readouterr().err
    # rollback: an index older than the stored one
    w.sign(created=json.loads(good)["created"] - 100)
    assert main([*cli, "update"]) == 4
    assert "rollback" in capsys.readouterr().err
    # unknown key
    from mixhelpers import make_key

    other, _ = make_key(w.base, "other")
    from mix.index import scan_repo, write_index

    write_index(w.repo, scan_repo(w.repo), other)
    assert main([*cli, "update"]) == 4
    assert "unknown key" in capsys.readouterr().err
    assert stored.read_bytes() == good
    # and the held index still serves installs
    assert main([*cli, "-y", "install", "app"]) == 0


def test_search_and_info(w: World, capsys) -> None:
    base_repo(w)
    rc, out, _ = w.mix("--json", "search", "tool", capsys=capsys)
    assert rc == 0 and [r["name"] for r in json.loads(out)] == ["tool"]
    rc, out, _ = w.mix("search", "nothing-like-this", capsys=capsys)
    assert rc == 9
    assert w.mix("install", "tool", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("--json", "info", "tool", capsys=capsys)
    info = json.loads(out)
    assert info["installed_version"] == "1.0" and info["reason"] == "explicit"
    rc, _, _err = w.mix("info", "ghost", capsys=capsys)
    assert rc == 9


def test_update_refuses_the_same_index_once_it_has_expired(w: World, capsys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirror that keeps serving the index mix already holds is caught by its expiry."""
    import time

    base_repo(w)
    w.sign(valid_days=2)
    assert w.mix("update", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("update", capsys=capsys)
    assert rc == 0 and "unchanged" in out
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3 * 86400)
    rc, _, err = w.mix("update", capsys=capsys)
    assert rc == 4 and "expired" in err


def test_setuid_file_listed_in_metadata_keeps_its_mode(w: World, tmp_path: Path) -> None:
    from mixhelpers import stage

    from mix.build import build_package

    d = stage(tmp_path, "su", files={"/usr/bin/su": "su"}, setuid=["/usr/bin/su"])
    (d / "files/usr/bin/su").chmod(0o4755)
    build_package(d, w.repo / "su-1.0.noarch.mixpkg")
    w.sign()
    assert w.mix("install", "su")[0] == 0
    assert (w.root / "usr/bin/su").stat().st_mode & 0o7777 == 0o4755
    assert w.mix("verify")[0] == 0


def test_script_without_its_interpreter_in_the_root_is_skipped_with_a_warning(
        w: World, capsys) -> None:
    w.pkg("early", files={"/etc/early": "e"},
          scripts={"post-install": "#!/bin/sh\necho ran > /ran\n"})
    w.sign()
    rc, _, err = w.mix("install", "early", capsys=capsys)
    assert rc == 0
    assert "post-install script skipped: /bin/sh does not exist" in err
    assert not (w.root / "ran").exists()


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_failing_post_install_removes_the_package_again(w: World, capsys) -> None:
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("helper", files={"/usr/lib/helper": "h"})
    w.pkg("other", files={"/usr/bin/other": "o"})
    w.pkg("broken", files={"/usr/bin/broken": "b"}, dependencies=["sh", "helper"],
          scripts={"post-install": "#!/bin/sh\necho cannot configure >&2\nexit 4\n"})
    w.sign()
    assert w.mix("install", "sh")[0] == 0
    (w.root / "bin/busybox").chmod(0o755)
    rc, _, err = w.mix("install", "other", "broken", capsys=capsys)
    assert rc == 7
    assert "post-install script failed with exit status 4" in err and "cannot configure" in err
    assert "removed again: broken, helper" in err
    assert w.installed() == {"sh": "1.0", "other": "1.0"}
    assert not (w.root / "usr/bin/broken").exists() and not (w.root / "usr/lib/helper").exists()
    assert w.mix("verify")[0] == 0


def test_search_uses_the_light_index_and_agrees_with_the_solver(w: World, capsys) -> None:
    base_repo(w)
    assert w.mix("update", capsys=capsys)[0] == 0
    assert w.mix("search", "tool", capsys=capsys)[0] == 0  # writes the caches if missing
    light = sorted(w.root.glob("var/lib/mix/**/index.search.solv"))
    assert light, "mix update/search should leave a search index beside the solver cache"
    rc, fast, _ = w.mix("--json", "search", "o", capsys=capsys)
    for path in light:
        path.unlink()
    rc2, slow, _ = w.mix("--json", "search", "o", capsys=capsys)
    assert rc == rc2 == 0
    assert json.loads(fast) == json.loads(slow) and json.loads(fast)
