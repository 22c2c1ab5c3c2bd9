"""`make packages`: every recipe in packages/ -> a signed .mixpkg in artifacts/repo/,
then the signed index. Rebuilds only recipes whose inputs changed.

Per recipe, two cache levels under $MIXOS_CACHE/packages/:
  <name>/stage.key, <name>/stage/, <name>/linkage.json   the staged tree and its ELF facts
  built/<name>-<key>.mixpkg                               the package, keyed by stage + metadata
A stage key hashes everything the staged tree depends on (docs/recipes.md, "Caching").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixbuild.common import (
    ARTIFACTS,
    PACKAGES_DIR,
    PROJECT,
    BuildError,
    cache_dir,
    cache_lock,
    hash_tree,
    log,
    source_date_epoch,
    step,
)
from mixbuild.packages import debian, debsource, depmap, pyruntime, wheel
from mixbuild.packages.elf import TreeLinkage, scan_tree
from mixbuild.packages.recipe import Recipe, RecipeError, load_recipes
from mixbuild.packages.staging import (
    MissingInput,
    StageInputs,
    Variables,
    make_variables,
    resolve_copy_src,
    stage_files,
    stage_scripts,
)

REPO = ARTIFACTS / "repo"
KEY_NAME = "mixos-repo"
# The distribution's packages are zstd (package format 2): the measured install of the
# root filesystem is faster than from gzip (docs/benchmarks.md), and every mix in MixOS
# reads it (the mix package depends on python3-zstandard).
COMPRESSION = "zstd"
# The builder's own code: a change to any of these rebuilds every package.
BUILDER_FILES = ("repo.py", "staging.py", "recipe.py", "debian.py", "debsource.py",
                 "elf.py", "pyruntime.py", "wheel.py", "depmap.py")
MIX_BUILD_FILES = ("build.py", "package.py")


def pkg_cache() -> Path:
    return cache_dir() / "packages"


def signing_key() -> Path:
    """$MIXOS_CACHE/keys/mixos-repo.key, generated with mix's own key code if absent."""
    from mix.keys import generate

    key = cache_dir() / "keys" / f"{KEY_NAME}.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        log(f"generating the repository signing key {key}")
        generate(key.with_suffix(""))
    return key


# How long an index the build signs stays valid, counted from SOURCE_DATE_EPOCH (the
# release's date, not the build's): a boot medium is used for the release's life, and
# two builds of one commit must sign the same bytes. A repository served to machines
# is re-signed by its publisher with `mix repo index`, dated by the clock (30 days).
BUILD_INDEX_VALID_DAYS = 730


def sign_build_index(repo: Path, entries: list[dict[str, Any]],
                     valid_days: int = BUILD_INDEX_VALID_DAYS) -> Path:
    """Sign REPO's index the reproducible way: dated SOURCE_DATE_EPOCH, so two builds of
    one commit in two places give the same bytes (ed25519 signatures are deterministic).
    Dates never go back within REPO, which rollback protection needs: when the index
    already there is newer, its date is kept if the packages are the same (the same
    bytes are written again) and advanced by one second if they changed."""
    import time

    from mix.index import next_created, write_index

    created = next_created(repo, entries, source_date_epoch())
    if created + valid_days * 86400 < time.time():
        raise BuildError(f"SOURCE_DATE_EPOCH={source_date_epoch()} is more than {valid_days} "
                         f"days ago: the index of {repo} would be signed already expired; "
                         "set it to the release's date (the Makefile's default)")
    return write_index(repo, entries, signing_key(), valid_days=valid_days, created=created)


@dataclass
class Staged:
    recipe: Recipe
    key: str
    linkage: dict[str, Any]  # {"has_elf", "provides", "needs": {soname: [files]}}
    version: str

    @property
    def stage_dir(self) -> Path:
        return pkg_cache() / self.recipe.name / "stage"


def _builder_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in BUILDER_FILES:
        h.update((here / name).read_bytes())
    mix_dir = here.parents[1] / "mix"  # src/mix
    for name in MIX_BUILD_FILES:
        if (mix_dir / name).exists():
            h.update((mix_dir / name).read_bytes())
    return h.hexdigest()


def _needs_python(recipe: Recipe) -> bool:
    return bool(recipe.bytecompile or recipe.python_runtime)


class Builder:
    """One packages run: resolved inputs shared by all recipes."""

    def __init__(self, recipes: dict[str, Recipe], force: bool = False) -> None:
        self.recipes = recipes
        self.force = force
        self.variables: Variables = make_variables()
        names = {n for r in recipes.values() for n in r.debian_packages()}
        names |= {b.package for r in recipes.values() for b in r.debian_source}
        if any(_needs_python(r) for r in recipes.values()):
            names |= set(pyruntime.TARGET_PYTHON_DEBS)
        with step(f"Resolving {len(names)} Debian packages"):
            self.debs = debian.candidates(sorted(names))
        self.builder_hash = _builder_hash()
        signing_key()  # base-files ships its public half
        self._python: list[str] | None = None
        self._keys: dict[str, str] = {}  # per run: each recipe is hashed and staged once
        self._staged: dict[str, Staged] = {}
        self._apt = debsource.PrivateApt()
        self._toolchain: str | None = None
        self._source_keys: dict[tuple[str, str], str] = {}

    def debian_dependencies(self, selected: list[str]) -> dict[str, list[str]]:
        """The MixOS dependencies of the Debian Depends of each selected compact recipe
        (depmap); every unmapped Depends of every recipe is reported at once."""
        compact = [self.recipes[n] for n in selected if self.recipes[n].compact]
        names = {n for r in compact for p in r.from_debian
                 for clause in debian.depends_clauses(self.debs[p].depends) for n in clause}
        known = {n: d.section for n, d in self.debs.items()}
        known |= debian.sections(sorted(names - set(known)))
        dmap = depmap.load_map(PACKAGES_DIR / depmap.MAP_NAME)
        owners = depmap.readers(self.recipes)
        out: dict[str, list[str]] = {}
        errors = []
        for r in compact:
            try:
                out[r.name] = depmap.map_depends(r, self.debs, owners,
                                                 lambda n: known.get(n, ""), dmap)
            except BuildError as e:
                errors.append(str(e))
        if errors:
            raise BuildError("\n".join(errors))
        return out

    def description_of(self, recipe: Recipe) -> str:
        return recipe.description or self.debs[recipe.from_debian[0]].summary

    def toolchain(self) -> str:
        if self._toolchain is None:
            self._toolchain = debsource.toolchain_versions()
        return self._toolchain

    def source_build_key(self, recipe: Recipe, package: str) -> str:
        """The cache key of RECIPE's build of PACKAGE's source (hashed once per run)."""
        if (recipe.name, package) not in self._source_keys:
            spec = next(b for b in recipe.debian_source if b.package == package)
            self._source_keys[recipe.name, package] = debsource.build_key(
                recipe, spec, self.debs[package], self.toolchain())
        return self._source_keys[recipe.name, package]

    def target_python(self) -> list[str]:
        if self._python is None:
            self._python = pyruntime.target_python()
        return self._python

    def version_of(self, recipe: Recipe) -> str:
        if recipe.version_from:
            deb = self.debs[recipe.version_from]
            # A program built from the source package carries the source's version.
            built = any(b.package == deb.name for b in recipe.debian_source)
            return debian.mix_version(deb.source_version if built else deb.version,
                                      recipe.revision)
        assert recipe.version is not None
        return self.variables.expand(recipe.version, f"{recipe.path} version")

    def stage_key(self, recipe: Recipe) -> str:
        if recipe.name not in self._keys:
            self._keys[recipe.name] = self._stage_key(recipe)
        return self._keys[recipe.name]

    def _stage_key(self, recipe: Recipe) -> str:
        h = hashlib.sha256()
        h.update(f"epoch={source_date_epoch()}\nbuilder={self.builder_hash}\n".encode())
        hash_tree(h, recipe.directory)
        debs = list(recipe.debian_packages())
        if _needs_python(recipe):
            debs += pyruntime.TARGET_PYTHON_DEBS
        for name in sorted(set(debs)):
            h.update(f"deb {name}={self.debs[name].version}\n".encode())
        for b in recipe.debian_source:
            h.update(f"debian_source {b.package} {self.source_build_key(recipe, b.package)}\n"
                     .encode())
        for w in recipe.wheel:
            h.update(f"wheel {w.requirement} {wheel.download(w.requirement).name}\n".encode())
        for c in recipe.copy:
            src = resolve_copy_src(recipe, c, self.variables)
            h.update(f"copy {src}\n".encode())
            if src.exists() or src.is_symlink():
                hash_tree(h, src)
            elif not c.optional:
                raise MissingInput(f"{recipe.path}: [[copy]] src {src} does not exist"
                                   + ("; run 'make kernel'" if "kernel" in str(src) else ""))
        rt = recipe.python_runtime
        if rt and rt.trace:
            if rt.trace not in self.recipes:
                raise BuildError(f"{recipe.path}: [python_runtime] trace names {rt.trace!r}, "
                                 "which has no recipe")
            for traced in self.traced_recipes(recipe):
                h.update(f"trace {traced.name} {self.stage_key(traced)}\n".encode())
        if recipe.python_beside:
            runtime = self.recipes.get(recipe.python_beside)
            if runtime is None or runtime.python_runtime is None:
                raise BuildError(f"{recipe.path}: python_beside names {recipe.python_beside!r}, "
                                 "which is no recipe with a [python_runtime]")
            h.update(f"beside {runtime.name} {self.stage_key(runtime)}\n".encode())
        text = recipe.path.read_text()
        for var in ("kernel_version", "kernel_mix_version", "project_version", "repo_url"):
            if "{" + var + "}" in text:
                h.update(f"var {var}={self.variables[var]}\n".encode())
        return h.hexdigest()

    def traced_recipes(self, recipe: Recipe) -> list[Recipe]:
        """[python_runtime] trace: the traced recipe, then the Python recipes it depends
        on, directly or not (mix and its python3-zstandard for the installer, PyYAML...),
        RECIPE itself aside. A Python recipe byte-compiles, unpacks a wheel or is named
        python3-*."""
        assert recipe.python_runtime is not None and recipe.python_runtime.trace
        traced = self.recipes[recipe.python_runtime.trace]
        out, todo, seen = [traced], list(traced.dependencies), {traced.name, recipe.name}
        while todo:
            name = todo.pop(0)
            if name in seen or name not in self.recipes:
                continue
            seen.add(name)
            dep = self.recipes[name]
            if dep.bytecompile or dep.wheel or dep.name.startswith("python3-"):
                out.append(dep)
                todo += list(dep.dependencies)
        return out

    def _cached(self, recipe: Recipe, key: str) -> bool:
        base = pkg_cache() / recipe.name
        return (not self.force and (base / "stage.key").exists()
                and (base / "stage.key").read_text() == key and (base / "linkage.json").exists())

    def prefetch(self) -> None:
        """Download, in one apt-get call, the .debs of every recipe that must be staged."""
        names: set[str] = set()
        for recipe in self.recipes.values():
            try:
                key = self.stage_key(recipe)
            except MissingInput:
                continue
            if not self._cached(recipe, key):
                names.update(recipe.debian_packages())
                if _needs_python(recipe):
                    names.update(pyruntime.TARGET_PYTHON_DEBS)
        if names:
            debian.download([self.debs[n] for n in sorted(names)])

    def stage(self, recipe: Recipe) -> Staged:
        """The staged tree of RECIPE, from cache when its key is unchanged."""
        if recipe.name not in self._staged:
            self._staged[recipe.name] = self._stage(recipe)
        return self._staged[recipe.name]

    def _stage(self, recipe: Recipe) -> Staged:
        key = self.stage_key(recipe)
        base = pkg_cache() / recipe.name
        version = self.version_of(recipe)
        if self._cached(recipe, key):
            return Staged(recipe, key, json.loads((base / "linkage.json").read_text()), version)
        with step(f"Staging {recipe.name} {version}"):
            inputs = StageInputs(target_python=self.target_python)
            rt = recipe.python_runtime
            if rt and rt.trace:
                traced = self.traced_recipes(recipe)
                inputs.trace_site = lambda: [self.stage(r).stage_dir / "files"
                                             / pyruntime.SITE.lstrip("/") for r in traced]
            if recipe.python_beside:
                runtime = self.recipes[recipe.python_beside]
                inputs.beside = lambda: self.stage(runtime).stage_dir / "files"
            pkgs = [self.debs[n] for n in recipe.debian_packages()]
            debs = debian.download(pkgs)
            inputs.debs.update({p.name: (p, debian.unpacked(debs[p.name])) for p in pkgs})
            for b in recipe.debian_source:
                inputs.source_builds[b.package] = debsource.build(
                    recipe, b, self.debs[b.package], self.source_build_key(recipe, b.package),
                    self._apt)
            for w in recipe.wheel:
                inputs.wheels[w.requirement] = wheel.unpacked(wheel.download(w.requirement))
            (base / "stage.key").unlink(missing_ok=True)
            stage_dir = base / "stage"
            shutil.rmtree(stage_dir, ignore_errors=True)
            (stage_dir / "files").mkdir(parents=True)
            stage_files(recipe, inputs, self.variables, stage_dir / "files")
            stage_scripts(recipe, stage_dir / "scripts")
            tree = scan_tree(stage_dir / "files")
            linkage = linkage_json(tree)
            (base / "linkage.json").write_text(json.dumps(linkage, indent=1, sort_keys=True))
            (base / "stage.key").write_text(key)
            log(f"{len(tree.files)} ELF files; provides {len(linkage['provides'])} "
                f"sonames; needs {len(linkage['needs'])} from other packages")
        return Staged(recipe, key, linkage, version)


def linkage_json(tree: TreeLinkage) -> dict[str, Any]:
    return {"has_elf": tree.has_elf, "provides": tree.provided_sonames(),
            "needs": tree.external_needs()}


def soname_providers(staged: dict[str, Staged]) -> dict[str, str]:
    """soname -> the package that carries it; two packages carrying one is an error."""
    providers: dict[str, str] = {}
    for name, s in sorted(staged.items()):
        for so in s.linkage["provides"]:
            if so in providers and providers[so] != name:
                raise BuildError(f"both {providers[so]} and {name} ship the shared library "
                                 f"{so}; exclude it from one of the recipes")
            providers[so] = name
    return providers


def check_sonames(packages: list[Staged], providers: dict[str, str]) -> None:
    """Every DT_NEEDED of the packages is shipped by some recipe; else one error listing all."""
    missing = []
    for s in packages:
        if not s.recipe.auto_dependencies:
            continue
        for so, users in s.linkage["needs"].items():
            if so not in providers:
                missing.append(f"  {so} (needed by {s.recipe.name}: {users[0]})")
    if missing:
        raise BuildError("shared libraries that no recipe ships:\n" + "\n".join(missing)
                         + "\nadd each to a recipe (e.g. its Debian package), or set "
                         "auto_dependencies = false in the recipe that needs it")


def auto_dependencies(s: Staged, providers: dict[str, str]) -> list[str]:
    """Package dependencies from DT_NEEDED; a soname nobody ships stops the build."""
    deps = set()
    for so, users in s.linkage["needs"].items():
        if so not in providers:
            raise BuildError(f"{s.recipe.name}: {users[0]} needs {so}, which no recipe ships; "
                             "add the library to a recipe (e.g. its Debian package) "
                             f"or set auto_dependencies = false in {s.recipe.path}")
        if providers[so] != s.recipe.name:
            deps.add(providers[so])
    return sorted(deps)


def check_paths(staged: dict[str, Staged]) -> None:
    """No two packages ship one path (mix refuses to install the second): each
    collision is named, with both recipes, before anything is built."""
    owner: dict[str, str] = {}
    clashes = []
    for name, s in sorted(staged.items()):
        files = s.stage_dir / "files"
        for dirpath, dirnames, filenames in os.walk(files):
            for entry in filenames + [d for d in dirnames if os.path.islink(
                    os.path.join(dirpath, d))]:
                path = "/" + os.path.relpath(os.path.join(dirpath, entry), files)
                if path == "/.complete":
                    continue
                if path in owner and owner[path] != name:
                    clashes.append(f"  {path}: {owner[path]} and {name}")
                owner.setdefault(path, name)
    if clashes:
        raise BuildError("paths shipped by two recipes (exclude or rename one):\n"
                         + "\n".join(clashes))


def provide_name(soname: str) -> str:
    """A soname as a mix name: characters mix does not allow become '_' (BIND's
    libdns-9.18.49-1~deb12u3-Debian.so -> libdns-9.18.49-1_deb12u3-Debian.so)."""
    return re.sub(r"[^A-Za-z0-9._+@-]", "_", soname)


def metadata(s: Staged, providers: dict[str, str], debian_deps: list[str] | None = None,
             description: str | None = None) -> dict[str, Any]:
    r = s.recipe
    deps = list(r.dependencies) + [d for d in debian_deps or [] if d not in r.dependencies]
    if r.auto_dependencies:
        deps += [d for d in auto_dependencies(s, providers) if d not in deps]
    arch = r.arch if r.arch != "auto" else ("x86_64" if s.linkage["has_elf"] else "noarch")
    provides = list(r.provides) + [provide_name(so) for so in s.linkage["provides"]
                                   if provide_name(so) not in r.provides]
    md: dict[str, Any] = {
        "name": r.name, "version": s.version, "description": description or r.description,
        "arch": arch,
        "license": r.license, "url": r.url, "dependencies": deps, "provides": provides,
        "conflicts": list(r.conflicts), "replaces": list(r.replaces),
    }
    if r.setuid:
        md["setuid"] = list(r.setuid)
    return md


def package_filename(md: dict[str, Any]) -> str:
    return f"{md['name']}-{md['version'].replace(':', '_')}.{md['arch']}.mixpkg"


def build_one(s: Staged, md: dict[str, Any]) -> Path:
    """The .mixpkg for S with metadata MD, from $MIXOS_CACHE/packages/built when known."""
    from mix.build import build_package

    key = hashlib.sha256((s.key + json.dumps(md, sort_keys=True) + COMPRESSION).encode()
                         ).hexdigest()[:20]
    built = pkg_cache() / "built" / f"{s.recipe.name}-{key}.mixpkg"
    if built.exists():
        return built
    with step(f"Building {package_filename(md)}"):
        (s.stage_dir / "metadata.json").write_text(json.dumps(md, indent=1, sort_keys=True))
        built.parent.mkdir(parents=True, exist_ok=True)
        tmp = built.with_name(built.name + ".tmp")
        os.environ.setdefault("SOURCE_DATE_EPOCH", str(source_date_epoch()))
        build_package(s.stage_dir, tmp, COMPRESSION)
        tmp.rename(built)
        for old in built.parent.glob(f"{s.recipe.name}-*.mixpkg"):
            if old != built and old.name[len(s.recipe.name) + 1:].count("-") == 0:
                old.unlink()
    return built


def check_closure(entries: list[dict[str, Any]]) -> None:
    """Every dependency of every package is satisfiable by some package in the repo."""
    from mix.package import parse_dependency

    names = {e["name"] for e in entries}
    for e in entries:
        names.update(p.split("=")[0].split("<")[0].split(">")[0] for p in e.get("provides", []))
    for e in entries:
        for dep in e.get("dependencies", []):
            if not any(spec.name in names for spec in parse_dependency(dep)):
                raise BuildError(f"{e['name']} depends on {dep!r}, which no package in the "
                                 "repository provides; add or fix a recipe")


def trace_sites(runtime: str = "python3") -> list[Path]:
    """The staged site-packages that the RUNTIME recipe's trace runs (cached): the traced
    recipe's and those of the recipes it depends on (used by pyruntime trace)."""
    recipes = load_recipes(PACKAGES_DIR)
    rt = recipes[runtime].python_runtime if runtime in recipes else None
    if rt is None or not rt.trace:
        raise BuildError(f"packages/{runtime}/recipe.toml has no [python_runtime] trace")
    with cache_lock("packages"):
        b = Builder(recipes)
        return [b.stage(r).stage_dir / "files" / pyruntime.SITE.lstrip("/")
                for r in b.traced_recipes(recipes[runtime])]


def build_repo(only: list[str] | None = None, force: bool = False,
               repo: Path = REPO) -> list[dict[str, Any]]:
    """Build the packages (ONLY, or all) into REPO and sign the index; return the entries."""
    from mix.index import scan_repo

    recipes = load_recipes(PACKAGES_DIR)
    unknown = sorted(set(only or []) - set(recipes))
    if unknown:
        raise BuildError(f"no recipe for {', '.join(unknown)}; recipes: {', '.join(recipes)}")
    selected = sorted(only) if only else sorted(recipes)
    builder = Builder(recipes, force=force)
    builder.prefetch()
    staged: dict[str, Staged] = {}
    # Every recipe is staged (from cache when unchanged): the soname map needs them all.
    for name in sorted(recipes):
        try:
            staged[name] = builder.stage(recipes[name])
        except MissingInput as e:
            if name in selected:
                raise
            log(f"skipping {name}: {e}")
    providers = soname_providers(staged)
    check_sonames([staged[n] for n in selected], providers)
    check_paths(staged)
    debian_deps = builder.debian_dependencies(selected)
    repo.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    for name in selected:
        md = metadata(staged[name], providers, debian_deps.get(name),
                      builder.description_of(recipes[name]))
        built = build_one(staged[name], md)
        target = repo / package_filename(md)
        wanted.add(target.name)
        if not target.exists() or target.read_bytes() != built.read_bytes():
            shutil.copyfile(built, target)
    if not only:
        for old in repo.glob("*.mixpkg"):
            if old.name not in wanted:
                log(f"removing stale {old.name}")
                old.unlink()
    with step("Signing the repository index"):
        entries = scan_repo(repo)
        try:
            check_closure(entries)
        except BuildError as e:
            if not only:
                raise
            log(f"warning: {e} (a partial build; 'make packages' builds them all)")
        sign_build_index(repo, entries)
    return entries


def report(entries: list[dict[str, Any]]) -> None:
    total = 0
    for e in sorted(entries, key=lambda e: e["name"]):
        total += e["installed_size"]
        print(f"  {e['name']:<20} {e['version']:<28} {e['size'] / 1024:8.0f} KiB "
              f"(installed {e['installed_size'] / 1024:8.0f} KiB)")
    print(f"  {len(entries)} packages, installed total {total / 1048576:.1f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild packages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="build just these recipes")
    parser.add_argument("--force", action="store_true", help="ignore the package caches")
    args = parser.parse_args(argv)
    try:
        with step(f"Building packages into {REPO.relative_to(PROJECT)}"), cache_lock("packages"):
            entries = build_repo(args.only, args.force)
        report(entries)
    except (BuildError, RecipeError) as e:
        print(f"mixbuild packages: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
