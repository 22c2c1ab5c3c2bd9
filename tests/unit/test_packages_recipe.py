"""Recipe parsing and validation (docs/recipes.md), and Debian version mapping."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mix.version import compare, parse_version
from mixbuild.common import PACKAGES_DIR
from mixbuild.packages.debian import mix_version
from mixbuild.packages.recipe import RecipeError, load_recipes, parse_recipe


def write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(text)
    return d / "recipe.toml"


BASE = 'name = "demo"\nversion = "1.0-r1"\ndescription = "d"\nlicense = "MIT"\n'


def test_every_recipe_in_the_repository_parses() -> None:
    recipes = load_recipes(PACKAGES_DIR)
    for required in ("base-files", "busybox", "glibc", "python3", "mix", "linux",
                     "openssh-server", "iptables", "mixos-base", "openssh", "nginx"):
        assert required in recipes
    for r in recipes.values():
        assert (r.description or r.compact) and r.license  # compact: Debian's


def test_full_recipe_is_parsed_into_typed_values(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + '''
dependencies = ["glibc", "python3>=3.11", "a | b"]
[[debian]]
package = "busybox"
include = ["bin/busybox"]
[[copy]]
src = "{repo}/configs/x"
to = "/etc/x"
mode = "0600"
optional = true
[[dir]]
path = "/root"
mode = "0700"
[[symlink]]
path = "/bin"
target = "usr/bin"
[[file]]
path = "/etc/hostname"
content = "mixos\\n"
''')
    r = parse_recipe(p)
    assert r.name == "demo" and r.version == "1.0-r1"
    assert r.dependencies == ("glibc", "python3>=3.11", "a | b")
    assert r.debian[0].package == "busybox" and r.debian[0].include == ("bin/busybox",)
    assert r.copy[0].mode == 0o600 and r.copy[0].optional
    assert r.dir[0].mode == 0o700
    assert r.symlink[0].target == "usr/bin"
    assert r.file[0].content == "mixos\n" and r.file[0].mode == 0o644
    assert r.debian_packages() == ["busybox"]


@pytest.mark.parametrize("extra, message", [
    ('colour = "blue"\n', "unknown key(s) colour"),
    ('[[debian]]\npackage = "x"\nincldue = ["a"]\n', "unknown key(s) incldue"),
    ('dependencies = "glibc"\n', "'dependencies' must be list"),
    ('[[copy]]\nsrc = "a"\nto = "/usr/bin/su"\nmode = "4755"\n', "setuid"),
    ('[[copy]]\nsrc = "a"\nto = "relative/path"\n', "normalized absolute path"),
    ('[[dir]]\npath = "/a/../etc"\n', "normalized absolute path"),
    ('arch = "arm"\n', "'arch' must be one of"),
    ('dependencies = ["bad name!"]\n', "invalid dependency"),
    ('[[symlink]]\ntarget = "x"\n', "exactly one of 'path' or 'paths_file'"),
    ('[scripts]\npost-install = "missing.sh"\n', "not a file"),
])
def test_invalid_recipes_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe(write(tmp_path, BASE + extra))


def test_version_and_version_from_are_exclusive(tmp_path: Path) -> None:
    text = BASE + 'version_from = "busybox"\n'
    with pytest.raises(RecipeError, match="exactly one of 'version'"):
        parse_recipe(write(tmp_path, text))
    with pytest.raises(RecipeError, match="exactly one of 'version'"):
        parse_recipe(write(tmp_path, BASE.replace('version = "1.0-r1"\n', "")))


def test_version_must_be_a_mix_version(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="invalid version"):
        parse_recipe(write(tmp_path, BASE.replace("1.0-r1", "1.0-r1-2")))


def test_name_must_match_directory(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="differs from its directory"):
        parse_recipe(write(tmp_path, BASE, name="other"))


def test_not_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not valid TOML"):
        parse_recipe(write(tmp_path, "name = \n"))


@pytest.mark.parametrize("debian, expected", [
    ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u3"),
    ("2.36-9+deb12u4", "2.36-9+deb12u4"),
    ("1.0-beta-2", "1.0_beta-2"),
    ("1.35.0", "1.35.0"),
    ("3.0.11-1~deb12u2", "3.0.11-1~deb12u2"),
    ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1"),
    ("2:1.0:rc1-3", "2:1.0_rc1-3"),
])
def test_debian_versions_map_to_valid_mix_versions(debian: str, expected: str) -> None:
    assert mix_version(debian) == expected
    parse_version(mix_version(debian))


def test_mapped_versions_keep_debian_order_for_security_updates() -> None:
    older, newer = mix_version("1:9.2p1-2+deb12u9"), mix_version("1:9.2p1-2+deb12u10")
    assert compare(older, newer) < 0
    assert compare(mix_version("2.36-9"), mix_version("2.36-9+deb12u1")) < 0


def test_revision_bumps_the_release() -> None:
    base = mix_version("1:9.2p1-2+deb12u3")
    bumped = mix_version("1:9.2p1-2+deb12u3", revision=2)
    assert bumped == "1:9.2p1-2+deb12u3+mixos2"
    assert compare(base, bumped) < 0
    assert mix_version("1.35.0", revision=1) == "1.35.0-mixos1"


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs apt")
def test_every_debian_package_a_recipe_names_is_known_to_apt() -> None:
    from mixbuild.packages.debian import candidates

    names = sorted({n for r in load_recipes(PACKAGES_DIR).values() for n in r.debian_packages()})
    found = candidates(names)  # raises, naming the unknown ones
    assert set(found) == set(names)
    for pkg in found.values():
        parse_version(mix_version(pkg.version))


def test_setuid_paths_are_declared_one_by_one(tmp_path: Path) -> None:
    recipe = parse_recipe(write(tmp_path, BASE + 'setuid = ["/usr/bin/demo"]\n'))
    assert recipe.setuid == ("/usr/bin/demo",)
    with pytest.raises(RecipeError, match="'setuid' must be a normalized absolute path"):
        parse_recipe(write(tmp_path, BASE + 'setuid = ["usr/bin/demo"]\n'))


def test_only_doas_and_uidmap_keep_a_setuid_mode() -> None:
    """Every setuid file of the repository is a decision in docs/security.md ("setuid
    and setgid programs": doas, and newuidmap/newgidmap for rootless containers)."""
    with_setuid = {r.name: r.setuid for r in load_recipes(PACKAGES_DIR).values() if r.setuid}
    assert with_setuid == {"doas": ("/usr/bin/doas",),
                           "uidmap": ("/usr/bin/newuidmap", "/usr/bin/newgidmap")}
