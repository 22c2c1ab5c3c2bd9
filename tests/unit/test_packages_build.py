"""Building packages from recipes: same recipe -> same bytes; the per-recipe cache
rebuilds only what changed; metadata carries the recipe's fields."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from mix.package import read_metadata
from mixbuild.common import PACKAGES_DIR
from mixbuild.packages.recipe import Recipe, load_recipes, parse_recipe
from mixbuild.packages.repo import Builder, build_one, metadata

RECIPE = '''
name = "demo"
version = "1.0-r1"
description = "demo package"
license = "MIT"
url = "https://example.invalid/"
dependencies = ["base-files"]
arch = "noarch"
[[copy]]
src = "files"
to = "/"
[[dir]]
path = "/var/lib/demo"
mode = "0700"
[[symlink]]
path = "/usr/bin/demo2"
target = "demo"
'''


def make_recipe(root: Path) -> Recipe:
    d = root / "demo"
    (d / "files/usr/bin").mkdir(parents=True)
    (d / "files/usr/bin/demo").write_text("#!/bin/sh\necho demo\n")
    (d / "files/usr/bin/demo").chmod(0o755)
    (d / "files/etc").mkdir()
    (d / "files/etc/demo.conf").write_text("x=1\n")
    (d / "recipe.toml").write_text(RECIPE)
    return parse_recipe(d / "recipe.toml")


def build(recipe: Recipe, cache: Path, monkeypatch: pytest.MonkeyPatch,
          others: dict[str, Recipe] | None = None) -> Path:
    """Stage and build RECIPE in the cache CACHE (OTHERS: recipes it may refer to)."""
    monkeypatch.setenv("MIXOS_CACHE", str(cache))
    b = Builder({**(others or {}), recipe.name: recipe})
    s = b.stage(recipe)
    # stand-in providers for the shared libraries other recipes would ship
    providers = {so: "some-library" for so in s.linkage["needs"]}
    return build_one(s, metadata(s, providers))


def test_same_recipe_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = make_recipe(tmp_path / "src")
    a = build(recipe, tmp_path / "cache-a", monkeypatch)
    # touch the sources: mtimes must not matter
    for p in (tmp_path / "src/demo/files").rglob("*"):
        os.utime(p, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    b = build(recipe, tmp_path / "cache-b", monkeypatch)
    assert a != b and a.read_bytes() == b.read_bytes()
    md = read_metadata(a)
    assert md.raw["dependencies"] == ["base-files"] and md.raw["arch"] == "noarch"
    assert md.raw["url"] == "https://example.invalid/" and md.raw["license"] == "MIT"
    modes = {f.path: f.mode for f in md.files}
    assert modes["/var/lib/demo"] == 0o700 and modes["/usr/bin/demo"] == 0o755


def test_cache_rebuilds_only_when_inputs_change(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = make_recipe(tmp_path / "src")
    first = build(recipe, tmp_path / "cache", monkeypatch)
    stage_key = (tmp_path / "cache/packages/demo/stage.key").read_text()
    again = build(recipe, tmp_path / "cache", monkeypatch)
    assert again == first  # same cache entry, nothing rebuilt
    (tmp_path / "src/demo/files/etc/demo.conf").write_text("x=2\n")
    changed = build(recipe, tmp_path / "cache", monkeypatch)
    assert changed != first
    assert (tmp_path / "cache/packages/demo/stage.key").read_text() != stage_key
    assert not first.exists()  # the stale built package was dropped


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


REAL_DEBS = Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos")) / "debs"


@pytest.mark.slow
@pytest.mark.skipif(not any(REAL_DEBS.glob("python3.11-minimal_*.deb")),
                    reason="needs the cached Debian packages of 'make packages'")
@pytest.mark.parametrize("name", ["python3", "busybox"])
def test_real_recipe_is_reproducible(name: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builds in two fresh caches (sharing only the downloaded .debs, wheels
    and source packages) agree byte for byte, .pyc files and compiled programs
    (busybox is built from source) included."""
    recipes = load_recipes(PACKAGES_DIR)
    recipe = recipes[name]
    outs = []
    for cache in (tmp_path / "a", tmp_path / "b"):
        cache.mkdir()
        (cache / "debs").mkdir()
        for deb in REAL_DEBS.glob("*.deb"):
            os.symlink(deb, cache / "debs" / deb.name)
        (cache / "wheels").mkdir()
        for whl in (REAL_DEBS.parent / "wheels").glob("*.whl"):
            os.symlink(whl, cache / "wheels" / whl.name)
        (cache / "debsrc").mkdir()
        for src in (REAL_DEBS.parent / "debsrc").glob("*_*"):  # downloads, not builds
            os.symlink(src, cache / "debsrc" / src.name)
        outs.append(build(recipe, cache, monkeypatch, recipes))
    assert _sha(outs[0]) == _sha(outs[1])
    shutil.rmtree(tmp_path)
