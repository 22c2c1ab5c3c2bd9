"""Recipes built from Debian source packages ([[debian_source]], docs/recipes.md):
the deb-src sources derived from the host's apt configuration, the recipe keys,
the build key, and staging from a built tree (no network)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixbuild.common import PACKAGES_DIR, BuildError
from mixbuild.packages.debian import DebPackage
from mixbuild.packages.debsource import build_key, deb_src_sources
from mixbuild.packages.recipe import RecipeError, parse_recipe
from mixbuild.packages.staging import StageInputs, make_variables, stage_files

DEB822 = """\
Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# a comment between stanzas
Types: deb-src
URIs: http://mirror.invalid/src-only
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: http://mirror.invalid/disabled
Suites: bookworm
Components: main
"""

RECIPE = """\
name = "demo"
version = "1.0-r1"
description = "d"
license = "MIT"
[[debian_source]]
package = "busybox"
script = "build.sh"
inputs = ["demo.config"]
include = ["usr/bin/demo"]
"""


def write_recipe(tmp_path: Path, text: str = RECIPE, files: tuple[str, ...] = (
        "build.sh", "demo.config")) -> Path:
    d = tmp_path / "demo"
    d.mkdir(parents=True, exist_ok=True)
    for name in files:
        (d / name).write_text(f"# {name}\n")
    (d / "recipe.toml").write_text(text)
    return d / "recipe.toml"


def test_deb_sources_become_deb_src_with_keys_and_options_kept(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(DEB822)
    (parts / "extra.list").write_text(
        "# comment\ndeb [signed-by=/k.gpg] http://mirror.invalid/extra bookworm main\n"
        "deb-src http://mirror.invalid/extra bookworm main\n")
    (parts / "other.list.disabled").write_text("deb http://mirror.invalid/off bookworm main\n")
    one_line, deb822 = deb_src_sources(tmp_path / "sources.list", parts)
    assert one_line == "deb-src [signed-by=/k.gpg] http://mirror.invalid/extra bookworm main\n"
    assert deb822.count("Types: deb-src") == 1  # the deb-src and the disabled stanza skipped
    assert "Types: deb\n" not in deb822
    assert "Suites: bookworm bookworm-updates" in deb822
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in deb822
    assert "disabled" not in deb822 and "src-only" not in deb822


def test_no_deb_sources_is_an_error(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (tmp_path / "sources.list").write_text("# nothing here\n")
    with pytest.raises(BuildError, match="no 'deb' sources"):
        deb_src_sources(tmp_path / "sources.list", parts)


def test_debian_source_table_is_parsed(tmp_path: Path) -> None:
    r = parse_recipe(write_recipe(tmp_path))
    (b,) = r.debian_source
    assert (b.package, b.script, b.inputs, b.include) == (
        "busybox", "build.sh", ("demo.config",), ("usr/bin/demo",))
    assert "busybox" not in r.debian_packages()  # its .deb is not an input


@pytest.mark.parametrize("missing", ["build.sh", "demo.config"])
def test_debian_source_files_must_exist_in_the_recipe_directory(tmp_path: Path,
                                                                missing: str) -> None:
    files = tuple(f for f in ("build.sh", "demo.config") if f != missing)
    with pytest.raises(RecipeError, match=f"'{missing}', which is not a file"):
        parse_recipe(write_recipe(tmp_path, files=files))


def test_debian_source_needs_a_script(tmp_path: Path) -> None:
    text = RECIPE.replace('script = "build.sh"\n', "")
    with pytest.raises(RecipeError, match="missing required key 'script'"):
        parse_recipe(write_recipe(tmp_path, text))


def test_one_package_is_built_once_per_recipe(tmp_path: Path) -> None:
    twice = RECIPE + RECIPE[RECIPE.index("[[debian_source]]"):]
    with pytest.raises(RecipeError, match="'busybox' is built twice"):
        parse_recipe(write_recipe(tmp_path, twice))


def test_build_key_follows_source_version_inputs_and_toolchain(tmp_path: Path) -> None:
    r = parse_recipe(write_recipe(tmp_path))
    spec = r.debian_source[0]
    pkg = DebPackage("busybox", "1:1.35.0-4+deb12u1+b1", "amd64", "busybox",
                     "1:1.35.0-4+deb12u1")
    key = build_key(r, spec, pkg, "gcc=12")
    assert key == build_key(r, spec, pkg, "gcc=12")
    newer = DebPackage("busybox", "1:1.35.0-4+deb12u2", "amd64", "busybox",
                       "1:1.35.0-4+deb12u2")
    assert build_key(r, spec, newer, "gcc=12") != key
    assert build_key(r, spec, pkg, "gcc=13") != key
    (r.directory / "demo.config").write_text("CONFIG_X=y\n")
    assert build_key(r, spec, pkg, "gcc=12") != key


def test_staging_copies_the_selected_files_of_the_built_tree(tmp_path: Path) -> None:
    r = parse_recipe(write_recipe(tmp_path))
    built = tmp_path / "built"
    (built / "usr/bin").mkdir(parents=True)
    (built / "usr/bin/demo").write_text("#!/bin/sh\n")
    (built / "usr/bin/demo").chmod(0o755)
    (built / "usr/share/doc").mkdir(parents=True)
    (built / "usr/share/doc/README").write_text("x\n")
    files = tmp_path / "files"
    stage_files(r, StageInputs(source_builds={"busybox": built}), make_variables(), files)
    assert sorted(p.relative_to(files).as_posix() for p in files.rglob("*")
                  if p.is_file()) == ["usr/bin/demo"]
    shutil.rmtree(built / "usr/bin")
    (built / "usr/bin").mkdir()
    with pytest.raises(BuildError, match="selects nothing"):
        stage_files(r, StageInputs(source_builds={"busybox": built}), make_variables(),
                    tmp_path / "files2")


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs apt")
def test_busybox_is_built_from_its_source_at_the_source_version() -> None:
    from mixbuild.packages.debian import candidates

    recipe = parse_recipe(PACKAGES_DIR / "busybox/recipe.toml")
    (spec,) = recipe.debian_source
    pkg = candidates([spec.package])[spec.package]
    assert pkg.source == "busybox"
    assert pkg.source_version and pkg.version.startswith(pkg.source_version)


def config_lines(path: Path) -> dict[str, str]:
    """CONFIG_X -> 'y' / '"value"' / 'n' (for '# CONFIG_X is not set')."""
    options = {}
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            options[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line.split()[1]] = "n"
    return options


def test_busybox_config_is_debians_with_the_documented_changes() -> None:
    """packages/busybox/recipe.toml lists the changes to Debian's configuration;
    nothing else may differ."""
    from mixbuild.packages.debsource import debsrc_dir

    trees = sorted((debsrc_dir() / "unpacked").glob("busybox_*/tree"))
    if not trees:
        pytest.skip("BusyBox's source is not unpacked yet (make packages)")
    debian = config_lines(trees[-1] / "debian/config/pkg/deb")
    ours = config_lines(PACKAGES_DIR / "busybox/busybox.config")
    changed = {k: (debian.get(k), ours.get(k)) for k in debian.keys() | ours.keys()
               if debian.get(k) != ours.get(k)}
    assert changed == {"CONFIG_USE_BB_PWD_GRP": ("n", "y"),
                       "CONFIG_USE_BB_SHADOW": ("n", "y"),
                       "CONFIG_LINUXRC": ("y", "n"),
                       "CONFIG_FEATURE_PREFER_APPLETS": ("n", "y"),
                       "CONFIG_FEATURE_SH_STANDALONE": ("n", "y"),
                       "CONFIG_FEATURE_SH_NOFORK": ("n", "y"),
                       "CONFIG_NTPD": ("n", "y"),
                       # runit: supervised services (docs/services.md)
                       "CONFIG_CHPST": ("n", "y"), "CONFIG_RUNSV": ("n", "y"),
                       "CONFIG_RUNSVDIR": ("n", "y"), "CONFIG_SV": ("n", "y"),
                       "CONFIG_SVLOGD": ("n", "y"),
                       "CONFIG_SV_DEFAULT_SERVICE_DIR": ('""', '"/run/service"')}
