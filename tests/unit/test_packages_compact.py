"""The compact recipe form (docs/recipes.md, "The compact form"): parsing, the mapping
of Debian Depends, declared users, names BusyBox owns, one owner per path, and a
Debian update rebuilding only the recipes it touches."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from mixbuild.common import PACKAGES_DIR, BuildError
from mixbuild.packages import depmap
from mixbuild.packages.debian import DebPackage, depends_clauses
from mixbuild.packages.recipe import FULL_BIN, RecipeError, load_recipes, parse_recipe
from mixbuild.packages.repo import Builder, Staged, check_paths
from mixbuild.packages.staging import shadow, user_scripts


def write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(text)
    return d / "recipe.toml"


def test_compact_recipe_needs_only_name_packages_and_license(tmp_path: Path) -> None:
    r = parse_recipe(write(tmp_path, 'name = "demo"\nfrom_debian = ["jq", "libjq1"]\n'
                                     'license = "MIT"\nexclude = ["usr/bin/x"]\n'))
    assert r.compact and r.version_from == "jq" and r.revision == 1
    assert [d.package for d in r.debian] == ["jq", "libjq1"]
    assert r.debian[0].include == ("**",) and r.debian[1].exclude == ("usr/bin/x",)
    assert r.description == "" and r.medium is False


def test_full_recipes_stay_on_the_medium_and_refuse_compact_keys(tmp_path: Path) -> None:
    base = 'name = "demo"\nversion = "1.0-r1"\ndescription = "d"\nlicense = "MIT"\n'
    assert parse_recipe(write(tmp_path, base)).medium is True
    with pytest.raises(RecipeError, match="compact form"):
        parse_recipe(write(tmp_path, base + 'include = ["usr/bin/x"]\n'))
    with pytest.raises(RecipeError, match="ignore_depends"):
        parse_recipe(write(tmp_path, base + 'ignore_depends = ["perl"]\n'))


def test_user_name_is_validated(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not a user name"):
        parse_recipe(write(tmp_path, 'name = "demo"\nfrom_debian = ["jq"]\nlicense = "MIT"\n'
                                     '[[user]]\nname = "Bad User"\n'))


def test_depends_clauses_keep_alternatives_and_drop_versions() -> None:
    assert depends_clauses("debconf (>= 0.5) | debconf-2.0, libbpf1 (>= 1:0.6), python3:any") \
        == [["debconf", "debconf-2.0"], ["libbpf1"], ["python3"]]


def _deb(name: str, depends: str) -> DebPackage:
    return DebPackage(name, "1.0-1", "amd64", depends=depends)


SECTIONS = {"libfoo1": "libs", "helper": "utils", "perl": "perl", "iproute2": "net"}


def test_depends_map_to_recipes_libraries_and_declared_exceptions(tmp_path: Path) -> None:
    r = parse_recipe(write(tmp_path, 'name = "demo"\nfrom_debian = ["demo"]\nlicense = "MIT"\n'
                                     'ignore_depends = ["perl"]\n'))
    debs = {"demo": _deb("demo", "libfoo1 (>= 1), iproute2, perl, debconf | debconf-2.0, "
                                 "procps")}
    dmap = depmap.DebianMap({"procps": "busybox"}, {"debconf": "maintainer scripts"})
    deps = depmap.map_depends(r, debs, {"iproute2": "iproute2"},
                              lambda n: SECTIONS.get(n, ""), dmap)
    assert deps == ["iproute2", "busybox"]


def test_unmapped_depends_stop_the_build_naming_each(tmp_path: Path) -> None:
    r = parse_recipe(write(tmp_path, 'name = "demo"\nfrom_debian = ["demo"]\nlicense = "MIT"\n'))
    debs = {"demo": _deb("demo", "helper, perl (>= 5)")}
    with pytest.raises(BuildError) as e:
        depmap.map_depends(r, debs, {}, lambda n: SECTIONS.get(n, ""), depmap.DebianMap())
    assert "helper (Depends of Debian demo)" in str(e.value)
    assert "perl (Depends of Debian demo)" in str(e.value)


def test_every_collection_recipe_maps_its_depends(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own compact recipes, against the host's apt: each Debian Depends
    is accounted for (chrony-like Depends on iproute2 become recipe dependencies)."""
    monkeypatch.setenv("MIXOS_CACHE", str(tmp_path))
    recipes = load_recipes(PACKAGES_DIR)
    compact = sorted(n for n, r in recipes.items() if r.compact)
    deps = Builder(recipes).debian_dependencies(compact)
    assert set(deps) == set(compact)
    assert deps["bash"] == ["base-files", "busybox"]  # base-files, debianutils
    assert deps["vim"] == [] and deps["libgnutls30"] == []


def test_user_scripts_add_and_remove_a_system_user(tmp_path: Path) -> None:
    r = parse_recipe(write(tmp_path, 'name = "demo"\nfrom_debian = ["jq"]\nlicense = "MIT"\n'
                                     '[[user]]\nname = "demo"\nhome = "/var/lib/demo"\n'))
    scripts = user_scripts(r)
    etc = tmp_path / "root/etc"
    etc.mkdir(parents=True)
    passwd = "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/sbin/nologin\n"
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text("root:x:0:\nusers:x:100:\n")
    (etc / "shadow").write_text("root:*:0::::::\n")
    before = {f: (etc / f).read_text() for f in ("passwd", "group", "shadow")}

    def sh(text: str) -> None:
        subprocess.run(["sh", "-e", "-c", text.replace("/etc/", f"{etc}/")], check=True)

    sh(scripts["post-install"])
    sh(scripts["post-install"])  # idempotent
    assert (etc / "passwd").read_text().count("\ndemo:") == 1
    assert "demo:x:101:101:demo:/var/lib/demo:/sbin/nologin" in (etc / "passwd").read_text()
    assert "demo:x:101:" in (etc / "group").read_text()
    sh(scripts["post-remove"])
    assert {f: (etc / f).read_text() for f in before} == before


def test_shadowed_path_moves_to_full_bin_with_a_profile_script(tmp_path: Path) -> None:
    r = parse_recipe(write(tmp_path, 'name = "demo"\nfrom_debian = ["less"]\nlicense = "MIT"\n'
                                     'shadows = ["/usr/bin/less"]\n'))
    files = tmp_path / "files"
    (files / "usr/bin").mkdir(parents=True)
    (files / "usr/bin/less").write_text("x")
    shadow(files, r)
    assert not (files / "usr/bin/less").exists()
    assert (files / FULL_BIN.lstrip("/") / "less").read_text() == "x"
    profile = (files / "etc/profile.d/demo.sh").read_text()
    assert f"PATH={FULL_BIN}:$PATH" in profile and f"alias less={FULL_BIN}/less" in profile


def test_two_recipes_shipping_one_path_are_named(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXOS_CACHE", str(tmp_path))
    staged = {}
    for name in ("busybox", "wget"):
        r = parse_recipe(write(tmp_path / "src", f'name = "{name}"\nfrom_debian = ["{name}"]\n'
                                                 'license = "MIT"\n', name))
        files = tmp_path / "packages" / name / "stage/files/usr/bin"
        files.mkdir(parents=True)
        os.symlink("busybox", files / "wget") if name == "busybox" else \
            (files / "wget").write_text("wget")
        staged[name] = Staged(r, "k", {}, "1")
    with pytest.raises(BuildError, match="/usr/bin/wget: busybox and wget"):
        check_paths(staged)


def test_a_debian_update_changes_only_the_recipes_that_read_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXOS_CACHE", str(tmp_path))
    recipes = load_recipes(PACKAGES_DIR)
    names = ("jq", "libjq1", "curl", "sqlite3")
    b = Builder({n: recipes[n] for n in names})
    keys = {n: b.stage_key(recipes[n]) for n in names}
    b2 = Builder({n: recipes[n] for n in names})
    b2.debs["jq"] = dataclasses.replace(b2.debs["jq"], version=b2.debs["jq"].version + "+deb12u9")
    assert {n: b2.stage_key(recipes[n]) != keys[n] for n in names} == \
        {"jq": True, "libjq1": False, "curl": False, "sqlite3": False}
