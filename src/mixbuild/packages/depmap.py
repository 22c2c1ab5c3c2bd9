"""Debian's `Depends` of a compact recipe (docs/recipes.md, "The compact form") as
MixOS dependencies. Library packages (Section libs) are left to the ELF facts; every
other Depends must be a MixOS recipe that reads that Debian package, a package that
packages/debian-map.toml says MixOS provides otherwise, or a Debian package that map or
the recipe's `ignore_depends` declares unneeded. Anything else stops the build with the
recipe to write."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mixbuild.common import BuildError
from mixbuild.packages.debian import LIBRARY_SECTIONS, DebPackage, depends_clauses
from mixbuild.packages.recipe import Recipe, RecipeError

MAP_NAME = "debian-map.toml"


@dataclass(frozen=True)
class DebianMap:
    """packages/debian-map.toml: [provided] Debian package -> MixOS package that does its
    job; [unneeded] Debian package -> why MixOS needs nothing in its place."""

    provided: Mapping[str, str] = field(default_factory=dict)
    unneeded: Mapping[str, str] = field(default_factory=dict)


def load_map(path: Path) -> DebianMap:
    if not path.exists():
        return DebianMap()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from e
    unknown = sorted(set(data) - {"provided", "unneeded"})
    if unknown:
        raise RecipeError(f"{path}: unknown table(s) {', '.join(unknown)}; allowed: provided, "
                          "unneeded")
    for table in ("provided", "unneeded"):
        for key, value in data.get(table, {}).items():
            if not isinstance(value, str) or not value:
                raise RecipeError(f"{path}: [{table}] {key} must be a non-empty string")
    return DebianMap(dict(data.get("provided", {})), dict(data.get("unneeded", {})))


def readers(recipes: Mapping[str, Recipe]) -> dict[str, str]:
    """Debian package -> the recipe that packages it: the compact recipe naming it in
    from_debian first, else a recipe of the same name, else any recipe reading it."""
    out: dict[str, str] = {}
    for rank in range(3):
        for name, r in sorted(recipes.items()):
            for deb in [d.package for d in r.debian]:
                hit = (deb in r.from_debian, deb == name, True)[rank]
                if hit:
                    out.setdefault(deb, name)
    return out


def map_depends(recipe: Recipe, debs: Mapping[str, DebPackage], owners: Mapping[str, str],
                section_of: Callable[[str], str], dmap: DebianMap) -> list[str]:
    """The MixOS dependencies of RECIPE's Debian Depends (from_debian packages only)."""
    deps: list[str] = []
    missing: list[str] = []
    for package in recipe.from_debian:
        for clause in depends_clauses(debs[package].depends):
            if any(section_of(n) in LIBRARY_SECTIONS for n in clause):
                continue  # a shared library: DT_NEEDED says whether it is needed
            if any(n in recipe.from_debian or n in recipe.ignore_depends
                   or n in dmap.unneeded for n in clause):
                continue
            found = next((owners[n] for n in clause if n in owners),
                         next((dmap.provided[n] for n in clause if n in dmap.provided), None))
            if found is None:
                missing.append(f"  {' | '.join(clause)} (Depends of Debian {package})")
            elif found != recipe.name and found not in deps:
                deps.append(found)
    if missing:
        raise BuildError(f"{recipe.path}: Debian dependencies that no MixOS recipe packages:\n"
                         + "\n".join(missing) + f"\nwrite a recipe for each (packages/<name>/"
                         "recipe.toml with from_debian), or list it in ignore_depends (this "
                         f"recipe) or in packages/{MAP_NAME} with the reason")
    return deps
