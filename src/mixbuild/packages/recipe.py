"""Package recipes: packages/<name>/recipe.toml, parsed and validated once into
frozen dataclasses. The format is specified in docs/recipes.md."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mix.version import InvalidDependency, InvalidVersion, parse_dependency, parse_version

NAME_RE = re.compile(r"[a-z0-9][a-z0-9+._-]*")
ARCHES = ("auto", "x86_64", "noarch")
SCRIPT_NAMES = ("pre-install", "post-install", "pre-remove", "post-remove", "post-upgrade")
DEFAULT_SITE = "/usr/lib/python3/dist-packages"
FULL_BIN = "/usr/lib/mixos/full-bin"


class RecipeError(ValueError):
    """A recipe that does not follow docs/recipes.md; the message names file and key."""


@dataclass(frozen=True)
class DebianSource:
    """Files taken from a Debian package (apt-get download, cached, unpacked)."""

    package: str
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class DebianSourceBuild:
    """Files built from the Debian source package of binary package `package` (at its
    candidate's source version) by `script`, a shell script in the recipe directory
    that installs into $DESTDIR; `inputs` are the other recipe files it reads."""

    package: str
    script: str
    inputs: tuple[str, ...] = ()
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class WheelSource:
    """Files taken from a PyPI wheel (pip download, cached, unzipped) into `to`."""

    requirement: str
    to: str = DEFAULT_SITE
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class CopySource:
    """A file or directory of the repository or of the build products.

    `src` is relative to the recipe directory unless it starts with {repo} or
    {artifacts}; `to` is the absolute path in the package."""

    src: str
    to: str
    mode: int | None = None
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class InlineFile:
    path: str
    content: str
    mode: int = 0o644
    template: bool = False


@dataclass(frozen=True)
class Symlink:
    """One symlink at `path`, or one per line of `paths_file` (recipe-relative),
    all pointing at `target`."""

    path: str | None
    target: str
    paths_file: str | None = None


@dataclass(frozen=True)
class Concat:
    """One file made of the staged files matching `include`, in path order (e.g. a
    CA bundle from single certificates); with `remove`, the parts are deleted."""

    path: str
    include: tuple[str, ...]
    mode: int = 0o644
    remove: bool = True


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int = 0o755


@dataclass(frozen=True)
class User:
    """A system user (and its group of the same name) that a Debian maintainer script
    would have made with adduser: made by the package's post-install script with the
    first free id in 100..999, removed again by its post-remove script."""

    name: str
    home: str = "/nonexistent"
    shell: str = "/sbin/nologin"


@dataclass(frozen=True)
class PythonRuntime:
    """A trimmed CPython: the interpreter's stdlib reduced to the modules listed in
    `modules` (a file in the recipe directory), compiled to sourceless .pyc."""

    stdlib_from: tuple[str, ...]
    modules: str
    dest: str = "/usr/lib/python3.11"
    trace: str | None = None  # a recipe whose Python code is traced at build time too


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    license: str
    directory: Path
    version: str | None = None
    version_from: str | None = None
    revision: int = 0
    url: str = ""
    arch: str = "auto"
    dependencies: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    auto_dependencies: bool = True
    strip: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    bytecompile: tuple[str, ...] = ()
    # Files that keep a setuid-root mode: each one a decision documented in
    # docs/security.md (today only doas, installed only for install.yaml's admins).
    setuid: tuple[str, ...] = ()
    debian: tuple[DebianSource, ...] = ()
    debian_source: tuple[DebianSourceBuild, ...] = ()
    wheel: tuple[WheelSource, ...] = ()
    copy: tuple[CopySource, ...] = ()
    file: tuple[InlineFile, ...] = ()
    symlink: tuple[Symlink, ...] = ()
    dir: tuple[Directory, ...] = ()
    concat: tuple[Concat, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)
    python_runtime: PythonRuntime | None = None
    # The compact form (docs/recipes.md, "The compact form"): whole Debian packages,
    # their non-library Depends mapped to recipes, the description taken from Debian.
    from_debian: tuple[str, ...] = ()
    ignore_depends: tuple[str, ...] = ()
    users: tuple[User, ...] = ()
    # Paths that BusyBox's applets already own in every image (/usr/bin/less): moved to
    # FULL_BIN, which the package's /etc/profile.d script puts first in a login PATH.
    shadows: tuple[str, ...] = ()
    # Carried in the boot medium's offline repository (artifacts/medium-repo); the
    # collection of compact recipes lives only in artifacts/repo.
    medium: bool = True
    # The rest of the standard library beside a trimmed runtime (python3-full beside
    # python3): every staged file that recipe ships, and every X.py whose module it
    # ships compiled (X.pyc), is left out, so each path and each module has one owner.
    python_beside: str | None = None

    @property
    def compact(self) -> bool:
        return bool(self.from_debian)

    @property
    def path(self) -> Path:
        return self.directory / "recipe.toml"

    def debian_packages(self) -> list[str]:
        """Every Debian package this recipe reads, in a stable order."""
        names = [d.package for d in self.debian]
        if self.version_from:
            names.append(self.version_from)
        if self.python_runtime:
            names.extend(self.python_runtime.stdlib_from)
        return sorted(set(names))


class _Table:
    """One TOML table being validated: typed getters that name the key on error,
    and a final check that no unknown key was given."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RecipeError(f"{where}: expected a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.seen: set[str] = set()

    def _get(self, key: str, kinds: tuple[type, ...], default: Any, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise RecipeError(f"{self.where}: missing required key '{key}'")
            return default
        value = self.data[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise RecipeError(f"{self.where}: '{key}' must be {names}, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None, required: bool = False) -> Any:
        return self._get(key, (str,), default, required)

    def flag(self, key: str, default: bool) -> bool:
        return bool(self._get(key, (bool,), default, False))

    def integer(self, key: str, default: int) -> int:
        return int(self._get(key, (int,), default, False))

    def strs(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(key, (list,), list(default), False)
        if not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{self.where}: '{key}' must be a list of strings, got {value!r}")
        return tuple(value)

    def mode(self, key: str, default: int | None) -> int | None:
        value = self._get(key, (str,), None, False)
        if value is None:
            return default
        if not re.fullmatch(r"0?[0-7]{3,4}", value):
            raise RecipeError(f"{self.where}: '{key}' must be an octal mode string like "
                              f"\"0644\", got {value!r}")
        mode = int(value, 8)
        if mode & 0o6000:
            raise RecipeError(f"{self.where}: '{key}' {value!r} sets setuid/setgid; MixOS "
                              "recipes ship no setuid files (see docs/security.md)")
        return mode

    def tables(self, key: str) -> list[_Table]:
        value = self._get(key, (list,), [], False)
        return [_Table(v, f"{self.where} [[{key}]] #{i + 1}") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise RecipeError(f"{self.where}: unknown key(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(self.seen))} (see docs/recipes.md)")


def _abs_path(t: _Table, key: str, value: str) -> str:
    if not value.startswith("/") or "/../" in value + "/" or "//" in value:
        raise RecipeError(f"{t.where}: '{key}' must be a normalized absolute path, got {value!r}")
    return value


def _check_deps(t: _Table, key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    for v in values:
        try:
            parse_dependency(v)
        except InvalidDependency as e:
            raise RecipeError(f"{t.where}: '{key}': {e}") from e
    return values


def parse_recipe(path: Path) -> Recipe:
    """Read and validate packages/<name>/recipe.toml."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from e
    except OSError as e:
        raise RecipeError(f"{path}: cannot read: {e}") from e
    t = _Table(data, str(path))
    name = t.text("name", required=True)
    if not NAME_RE.fullmatch(name):
        raise RecipeError(f"{path}: name {name!r} must match {NAME_RE.pattern}")
    if name != path.parent.name:
        raise RecipeError(f"{path}: name {name!r} differs from its directory "
                          f"{path.parent.name!r}; rename one of them")
    from_debian = t.strs("from_debian")
    version = t.text("version")
    version_from = t.text("version_from")
    if from_debian and version is None and version_from is None:
        version_from = from_debian[0]
    if (version is None) == (version_from is None):
        raise RecipeError(f"{path}: give exactly one of 'version' (a mix version like "
                          "\"1.0-r1\") or 'version_from' (a Debian package name)")
    if version is not None and "{" not in version:
        try:
            parse_version(version)
        except InvalidVersion as e:
            raise RecipeError(f"{path}: 'version': {e}") from e
    arch = t.text("arch", "auto")
    if arch not in ARCHES:
        raise RecipeError(f"{path}: 'arch' must be one of {', '.join(ARCHES)}, got {arch!r}")

    debian = []
    include, exclude = t.strs("include", ("**",)), t.strs("exclude")
    if not from_debian and ("include" in data or "exclude" in data):
        raise RecipeError(f"{path}: top-level 'include'/'exclude' belong to the compact form; "
                          "use them with 'from_debian' (or inside [[debian]])")
    for package in from_debian:
        debian.append(DebianSource(package, include, exclude))
    for s in t.tables("debian"):
        debian.append(DebianSource(s.text("package", required=True),
                                   s.strs("include", ("**",)), s.strs("exclude")))
        s.done()
    built: list[DebianSourceBuild] = []
    for s in t.tables("debian_source"):
        script = s.text("script", required=True)
        inputs = s.strs("inputs")
        for key, rel in [("script", script)] + [("inputs", i) for i in inputs]:
            if "/" in rel or not (path.parent / rel).is_file():
                raise RecipeError(f"{s.where}: '{key}' names {rel!r}, which is not a file "
                                  f"in {path.parent}")
        package = s.text("package", required=True)
        if any(b.package == package for b in built):
            raise RecipeError(f"{s.where}: {package!r} is built twice; one [[debian_source]] "
                              "per package (select more files with its include)")
        built.append(DebianSourceBuild(package, script, inputs, s.strs("include", ("**",)),
                                       s.strs("exclude")))
        s.done()
    wheels = []
    for s in t.tables("wheel"):
        wheels.append(WheelSource(s.text("requirement", required=True),
                                  _abs_path(s, "to", s.text("to", DEFAULT_SITE)),
                                  s.strs("include", ("**",)), s.strs("exclude")))
        s.done()
    copies = []
    for s in t.tables("copy"):
        copies.append(CopySource(s.text("src", required=True),
                                 _abs_path(s, "to", s.text("to", required=True)),
                                 s.mode("mode", None), s.strs("include", ("**",)),
                                 s.strs("exclude"), s.flag("optional", False)))
        s.done()
    files = []
    for s in t.tables("file"):
        files.append(InlineFile(_abs_path(s, "path", s.text("path", required=True)),
                                s.text("content", required=True), s.mode("mode", 0o644) or 0o644,
                                s.flag("template", False)))
        s.done()
    links = []
    for s in t.tables("symlink"):
        one, many = s.text("path"), s.text("paths_file")
        if (one is None) == (many is None):
            raise RecipeError(f"{s.where}: give exactly one of 'path' or 'paths_file'")
        if many is not None and not (path.parent / many).is_file():
            raise RecipeError(f"{s.where}: 'paths_file' {many!r} is not a file in {path.parent}")
        links.append(Symlink(None if one is None else _abs_path(s, "path", one),
                             s.text("target", required=True), many))
        s.done()
    dirs = []
    for s in t.tables("dir"):
        mode = s.mode("mode", 0o755)
        dirs.append(Directory(_abs_path(s, "path", s.text("path", required=True)),
                              0o755 if mode is None else mode))
        s.done()
    concats = []
    for s in t.tables("concat"):
        include = s.strs("include")
        if not include:
            raise RecipeError(f"{s.where}: 'include' must name the files to join")
        concats.append(Concat(_abs_path(s, "path", s.text("path", required=True)), include,
                              s.mode("mode", 0o644) or 0o644, s.flag("remove", True)))
        s.done()
    scripts: dict[str, str] = {}
    if "scripts" in data:
        s = _Table(t.data["scripts"], f"{path} [scripts]")
        t.seen.add("scripts")
        for key in SCRIPT_NAMES:
            value = s.text(key)
            if value is not None:
                if not (path.parent / value).is_file():
                    raise RecipeError(f"{s.where}: '{key}' names {value!r}, which is not a file "
                                      f"in {path.parent}")
                scripts[key] = value
        s.done()
    users = []
    for s in t.tables("user"):
        user = s.text("name", required=True)
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
            raise RecipeError(f"{s.where}: 'name' {user!r} is not a user name")
        users.append(User(user, _abs_path(s, "home", s.text("home", "/nonexistent")),
                          _abs_path(s, "shell", s.text("shell", "/sbin/nologin"))))
        s.done()
    runtime = None
    if "python_runtime" in data:
        s = _Table(t.data["python_runtime"], f"{path} [python_runtime]")
        t.seen.add("python_runtime")
        runtime = PythonRuntime(s.strs("stdlib_from"), s.text("modules", required=True),
                                _abs_path(s, "dest", s.text("dest", "/usr/lib/python3.11")),
                                s.text("trace"))
        if not runtime.stdlib_from:
            raise RecipeError(f"{s.where}: 'stdlib_from' must name the Debian packages "
                              "holding the standard library")
        if not (path.parent / runtime.modules).is_file():
            raise RecipeError(f"{s.where}: 'modules' file {runtime.modules!r} not found in "
                              f"{path.parent}; generate it with "
                              "'python -m mixbuild.packages.pyruntime trace'")
        s.done()

    recipe = Recipe(
        name=name,
        # The compact form may leave the description to Debian's (filled in at build).
        description=t.text("description", "" if from_debian else None,
                           required=not from_debian),
        license=t.text("license", required=True),
        directory=path.parent,
        version=version,
        version_from=version_from,
        # Compact recipes always carry a MixOS release suffix (+mixos1, +mixos2...).
        revision=t.integer("revision", 1 if from_debian else 0),
        url=t.text("url", ""),
        arch=arch,
        dependencies=_check_deps(t, "dependencies", t.strs("dependencies")),
        provides=_check_deps(t, "provides", t.strs("provides")),
        conflicts=_check_deps(t, "conflicts", t.strs("conflicts")),
        replaces=_check_deps(t, "replaces", t.strs("replaces")),
        auto_dependencies=t.flag("auto_dependencies", True),
        strip=t.strs("strip"),
        keep=t.strs("keep"),
        bytecompile=tuple(_abs_path(t, "bytecompile", p) for p in t.strs("bytecompile")),
        setuid=tuple(_abs_path(t, "setuid", p) for p in t.strs("setuid")),
        debian=tuple(debian),
        debian_source=tuple(built),
        wheel=tuple(wheels),
        copy=tuple(copies),
        file=tuple(files),
        symlink=tuple(links),
        dir=tuple(dirs),
        concat=tuple(concats),
        scripts=scripts,
        python_runtime=runtime,
        from_debian=from_debian,
        ignore_depends=t.strs("ignore_depends"),
        users=tuple(users),
        shadows=tuple(_abs_path(t, "shadows", p) for p in t.strs("shadows")),
        medium=t.flag("medium", not from_debian),
        python_beside=t.text("python_beside"),
    )
    if recipe.revision < 0:
        raise RecipeError(f"{path}: 'revision' must be >= 0")
    if recipe.ignore_depends and not from_debian:
        raise RecipeError(f"{path}: 'ignore_depends' belongs to the compact form "
                          "('from_debian'): only its Debian Depends are mapped")
    t.done()
    return recipe


def load_recipes(root: Path) -> dict[str, Recipe]:
    """Every packages/*/recipe.toml under ROOT, by name."""
    recipes = {}
    for path in sorted(root.glob("*/recipe.toml")):
        recipe = parse_recipe(path)
        recipes[recipe.name] = recipe
    return recipes
