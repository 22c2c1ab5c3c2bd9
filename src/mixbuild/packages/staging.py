"""Staging: turn one recipe into the directory `mix build` packs (files/ +
scripts/ + metadata.json without dependencies). Applies the recipe's sources in
order, merges /usr, strips docs, fixes owners and mtimes. Rules: docs/recipes.md."""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mixbuild.common import ARTIFACTS, PROJECT, BuildError, cache_dir, source_date_epoch
from mixbuild.packages.debian import DebPackage
from mixbuild.packages.recipe import FULL_BIN, CopySource, Recipe

DEFAULT_STRIP = (
    "usr/share/doc/**", "usr/share/man/**", "usr/share/info/**", "usr/share/locale/**",
    "usr/share/lintian/**", "usr/share/bug/**", "usr/share/doc-base/**",
    "usr/share/bash-completion/**", "usr/share/zsh/**", "usr/share/menu/**",
    "usr/share/apport/**", "usr/share/gdb/**", "usr/lib/systemd/**", "etc/systemd/**",
    "etc/init.d/**", "etc/rc?.d/**", "usr/lib/tmpfiles.d/**", "usr/lib/sysusers.d/**",
    "etc/default/**", "etc/logrotate.d/**", "usr/lib/**/*.a", "usr/include/**",
)
# What the compact form also drops: files that only Debian's maintainer scripts, package
# tools or desktop/systemd integration read (MixOS declares users, directories and
# links in the recipe and runs none of these).
COMPACT_STRIP = (
    "usr/share/debconf/**", "usr/share/polkit-1/**", "usr/share/dbus-1/**", "etc/dbus-1/**",
    "usr/lib/udev/**", "etc/apparmor.d/**", "etc/cron.*/**", "etc/ufw/**",
    "usr/share/applications/**", "usr/share/pixmaps/**", "usr/share/icons/**",
    "usr/lib/*/perl5/**", "usr/share/perl5/**", "usr/share/lintian/**", "usr/share/mime/**",
    "etc/bash_completion.d/**", "usr/share/bug/**", "etc/network/**", "etc/ppp/**", "etc/resolvconf/**", "etc/NetworkManager/**",
)
MERGED_DIRS = ("bin", "sbin", "lib", "lib64")
DEFAULT_REPO_URL = "file:///run/mixos/medium/repo"


class MissingInput(BuildError):
    """A recipe input (a build product, usually) does not exist yet."""


@functools.lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: `**` any depth, `*` and `?` within one component,
    `[...]` classes. A pattern also matches everything below a matched directory."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?")


def matches(path: str, patterns: Iterable[str]) -> bool:
    """PATH (relative, no leading '/') matches one of PATTERNS."""
    return any(glob_regex(p.strip("/")).fullmatch(path) for p in patterns)


def select(paths: Iterable[str], include: Iterable[str], exclude: Iterable[str]) -> list[str]:
    """The PATHS that match INCLUDE and not EXCLUDE. A path also matches under its
    merged-/usr name (lib/x.so.1 matches "usr/lib/x.so.1"), so recipes may use
    either form whatever the Debian package does."""
    inc, exc = list(include), list(exclude)

    def hit(p: str, patterns: list[str]) -> bool:
        return matches(p, patterns) or matches(merged_path(p), patterns)

    return [p for p in paths if hit(p, inc) and not hit(p, exc)]


def walk_entries(root: Path) -> list[str]:
    """Relative paths of every file and symlink under ROOT (directories implied),
    plus empty directories, sorted; the '.complete' cache marker is left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in dirnames[:]:
            if (Path(dirpath) / name).is_symlink():
                found.append((rel / name).as_posix())
                dirnames.remove(name)
        for name in filenames:
            found.append((rel / name).as_posix())
        if not dirnames and not filenames and rel != Path("."):
            found.append(rel.as_posix() + "/")
    return sorted(p for p in found if p != ".complete")


def copy_entry(src: Path, dst: Path, mode: int | None = None, git_modes: bool = False) -> None:
    """Copy one file, symlink or (empty) directory, keeping modes and symlinks.
    MODE overrides a file's mode; GIT_MODES reduces it to what git records
    (0755 if executable, else 0644), so a checkout's umask does not matter."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.is_dir() and not dst.is_symlink():
            if src.is_dir() and not src.is_symlink():
                return
            raise BuildError(f"staging: {dst} is a directory and {src} is not")
        dst.unlink()
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir(exist_ok=True)
    else:
        shutil.copyfile(src, dst)
        if mode is None:
            mode = stat.S_IMODE(src.stat().st_mode) & ~0o6000
            if git_modes:
                mode = 0o755 if mode & 0o111 else 0o644
        os.chmod(dst, mode)


def copy_tree(src_root: Path, dst_root: Path, include: Iterable[str],
              exclude: Iterable[str], mode: int | None = None, git_modes: bool = False) -> int:
    n = 0
    for rel in select(walk_entries(src_root), include, exclude):
        copy_entry(src_root / rel.rstrip("/"), dst_root / rel.rstrip("/"), mode, git_modes)
        n += 1
    return n


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of PATH without '#' comments."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


class Variables(dict[str, str]):
    """{variables} of docs/recipes.md, computed when first used."""

    def __missing__(self, key: str) -> str:
        if key == "kernel_version":
            path = ARTIFACTS / "kernel" / "version"
            if not path.exists():
                raise MissingInput(f"{path} does not exist; run 'make kernel' first")
            value = path.read_text().strip()
        elif key == "kernel_mix_version":
            value = re.sub(r"[^A-Za-z0-9._+~^]", "_", self["kernel_version"])
        elif key == "project_version":
            value = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
        elif key == "cache":
            value = str(cache_dir())
        elif key == "repo_url":
            value = os.environ.get("MIXOS_REPO_URL", DEFAULT_REPO_URL)
        else:
            raise BuildError(f"unknown variable {{{key}}}; known: repo, artifacts, "
                             "kernel_version, kernel_mix_version, project_version, repo_url, cache "
                             "(docs/recipes.md)")
        self[key] = value
        return value

    def expand(self, text: str, where: str) -> str:
        try:
            return text.format_map(self)
        except (ValueError, IndexError) as e:
            raise BuildError(f"{where}: bad {{variable}} in {text!r}: {e}") from e


def make_variables() -> Variables:
    v = Variables()
    v["repo"] = str(PROJECT)
    v["artifacts"] = str(ARTIFACTS)
    return v


def resolve_copy_src(recipe: Recipe, c: CopySource, variables: Variables) -> Path:
    src = variables.expand(c.src, f"{recipe.path} [[copy]] src")
    path = Path(src)
    return path if path.is_absolute() else recipe.directory / path


def _retarget(link: Path, old_parent: str, new_parent: str) -> None:
    """Keep a relative symlink pointing at the same (merged-/usr) place after a move."""
    target = os.readlink(link)
    if target.startswith("/"):
        return
    absolute = os.path.normpath(os.path.join("/", old_parent, target))
    absolute = merged_path(absolute.lstrip("/"))
    new = os.path.relpath("/" + absolute, "/" + new_parent)
    if new != target:
        link.unlink()
        os.symlink(new, link)


def merged_path(rel: str) -> str:
    """bin/x -> usr/bin/x (and sbin, lib, lib64); anything else unchanged."""
    top, _, rest = rel.partition("/")
    if top in MERGED_DIRS and rest:
        return f"usr/{top}/{rest}"
    return rel


def merge_usr(files: Path) -> None:
    """Move /bin, /sbin, /lib, /lib64 content under /usr (a top-level symlink stays)."""
    for top in MERGED_DIRS:
        src = files / top
        if src.is_symlink() or not src.is_dir():
            continue
        for rel in walk_entries(src):
            rel = rel.rstrip("/")
            old = f"{top}/{rel}"
            new = merged_path(old)
            dst = files / new
            if (dst.exists() or dst.is_symlink()) and not dst.is_dir():
                raise BuildError(f"staging: both /{old} and /{new} exist; merged /usr "
                                 "cannot hold both (exclude one in the recipe)")
            if dst.is_dir() and not dst.is_symlink():
                continue  # an empty directory both places: keep the /usr one
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src / rel, dst)
            if dst.is_symlink():
                _retarget(dst, os.path.dirname(old), os.path.dirname(new))
        shutil.rmtree(src)


def strip_tree(files: Path, extra: Iterable[str], keep: Iterable[str],
               protected: Iterable[str] = ()) -> list[str]:
    """Delete what the strip rules match; then prune empty directories except the
    PROTECTED ones (declared by the recipe). Returns what was removed."""
    rules = list(DEFAULT_STRIP) + list(extra)
    keep = list(keep)
    removed = []
    for rel in walk_entries(files):
        clean = rel.rstrip("/")
        if matches(clean, rules) and not matches(clean, keep):
            p = files / clean
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
            removed.append(clean)
    keep_dirs = {p.strip("/") for p in protected}
    for dirpath, _dirnames, _filenames in os.walk(files, topdown=False):
        d = Path(dirpath)
        rel = d.relative_to(files).as_posix()
        if d != files and rel not in keep_dirs and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    return removed


def normalize(files: Path, epoch: int) -> None:
    """Owner root:root (when we are root: mix build records root anyway) and mtime
    SOURCE_DATE_EPOCH for every entry."""
    as_root = os.geteuid() == 0
    for dirpath, dirnames, filenames in os.walk(files):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if as_root:
                os.lchown(p, 0, 0)
            os.utime(p, (epoch, epoch), follow_symlinks=False)
    os.utime(files, (epoch, epoch))


@dataclass
class StageInputs:
    """What the sources of a recipe resolved to (for the stage and its cache key)."""

    debs: dict[str, tuple[DebPackage, Path]] = field(default_factory=dict)
    source_builds: dict[str, Path] = field(default_factory=dict)  # package -> DESTDIR tree
    wheels: dict[str, Path] = field(default_factory=dict)  # requirement -> unpacked tree
    target_python: Callable[[], list[str]] | None = None
    # python_runtime.trace: the staged site-packages of the traced recipe, then of the
    # recipes it depends on
    trace_site: Callable[[], list[Path]] | None = None
    # python_beside: the staged files of the trimmed runtime this recipe completes
    beside: Callable[[], Path] | None = None


def stage_files(recipe: Recipe, inputs: StageInputs, variables: Variables, files: Path) -> None:
    """Fill FILES (the package tree) from the recipe's sources, in documented order.
    Directories made on the way get 0755 whatever the caller's umask."""
    old_umask = os.umask(0o022)
    try:
        _stage_files(recipe, inputs, variables, files)
    finally:
        os.umask(old_umask)


def _stage_files(recipe: Recipe, inputs: StageInputs, variables: Variables, files: Path) -> None:
    from mixbuild.packages import pyruntime  # local import: pyruntime uses staging helpers

    for d in recipe.debian:
        tree = inputs.debs[d.package][1]
        if copy_tree(tree, files, d.include, d.exclude) == 0:
            raise BuildError(f"{recipe.path}: [[debian]] {d.package}: include {list(d.include)} "
                             f"selects nothing from {tree}")
    for b in recipe.debian_source:
        tree = inputs.source_builds[b.package]
        if copy_tree(tree, files, b.include, b.exclude) == 0:
            raise BuildError(f"{recipe.path}: [[debian_source]] {b.package}: include "
                             f"{list(b.include)} selects nothing from {tree}")
    for w in recipe.wheel:
        tree = inputs.wheels[w.requirement]
        exclude = list(w.exclude)
        if not any(".dist-info" in p for p in w.include):
            exclude.append("*.dist-info")
        dest = files / w.to.lstrip("/")
        if copy_tree(tree, dest, w.include, exclude) == 0:
            raise BuildError(f"{recipe.path}: [[wheel]] {w.requirement} selects nothing")
    for c in recipe.copy:
        src = resolve_copy_src(recipe, c, variables)
        dest = files / variables.expand(c.to, f"{recipe.path} [[copy]] to").lstrip("/")
        if not (src.exists() or src.is_symlink()):
            if c.optional:
                continue
            raise MissingInput(f"{recipe.path}: [[copy]] src {src} does not exist"
                               + ("; run 'make kernel'" if "kernel" in str(src) else ""))
        if src.is_dir() and not src.is_symlink():
            copy_tree(src, dest, c.include, list(c.exclude) + ["**/__pycache__"], c.mode,
                      git_modes=True)
        else:
            copy_entry(src, dest, c.mode, git_modes=True)
    for f in recipe.file:
        dest = files / variables.expand(f.path, f"{recipe.path} [[file]]").lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        content = variables.expand(f.content, f"{recipe.path} [[file]] {f.path}") \
            if f.template else f.content
        dest.write_text(content)
        os.chmod(dest, f.mode)
    for d2 in recipe.dir:
        dest = files / variables.expand(d2.path, f"{recipe.path} [[dir]]").lstrip("/")
        dest.mkdir(parents=True, exist_ok=True)
        os.chmod(dest, d2.mode)
    for s in recipe.symlink:
        paths = [s.path] if s.path else read_lines(recipe.directory / str(s.paths_file))
        target = variables.expand(s.target, f"{recipe.path} [[symlink]] target")
        for link in (variables.expand(p, f"{recipe.path} [[symlink]]") for p in paths):
            if not link.startswith("/") or "/../" in link + "/":
                raise BuildError(f"{recipe.path}: symlink path {link!r} must be absolute")
            dest = files / link.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            os.symlink(target, dest)
    if recipe.python_runtime:
        pyruntime.build_runtime(recipe, inputs, files)
    merge_usr(files)
    if recipe.python_beside:
        assert inputs.beside is not None
        pyruntime.leave_to_runtime(files, inputs.beside())
    if recipe.shadows:
        shadow(files, recipe)
    for cat in recipe.concat:
        concat(files, cat.path, cat.include, cat.mode, cat.remove, f"{recipe.path} [[concat]]")
    extra_strip = list(recipe.strip) + (list(COMPACT_STRIP) if recipe.compact else [])
    strip_tree(files, extra_strip, recipe.keep, [d2.path for d2 in recipe.dir])
    if recipe.bytecompile:
        if inputs.target_python is None:
            raise BuildError(f"{recipe.path}: bytecompile needs the target Python")
        for d3 in recipe.bytecompile:
            pyruntime.bytecompile(inputs.target_python(), files, d3)
    normalize(files, source_date_epoch())
    # After normalize: a chown clears the setuid bit.
    for path in recipe.setuid:
        setuid_file = files / path.lstrip("/")
        if not setuid_file.is_file() or setuid_file.is_symlink():
            raise BuildError(f"{recipe.path}: setuid {path} is not a regular file of the package")
        os.chmod(setuid_file, stat.S_IMODE(setuid_file.stat().st_mode) | stat.S_ISUID)


# BusyBox's ash runs its own applets before searching PATH (FEATURE_PREFER_APPLETS,
# SH_STANDALONE), so a login shell gets an alias too; PATH serves bash and exec().
PROFILE_PATH = f"""\
# {{name}}: its full programs come before BusyBox's applets of the same name.
case ":$PATH:" in *:{FULL_BIN}:*) ;; *) PATH={FULL_BIN}:$PATH ;; esac
"""


def shadow(files: Path, recipe: Recipe) -> None:
    """Move each `shadows` path to FULL_BIN (BusyBox owns the name in /usr/bin)."""
    for path in recipe.shadows:
        src = files / path.lstrip("/")
        if not (src.exists() or src.is_symlink()) or src.is_dir():
            raise BuildError(f"{recipe.path}: shadows {path}: not a staged file")
        dest = files / FULL_BIN.lstrip("/") / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dest)
    profile = files / "etc/profile.d" / f"{recipe.name}.sh"
    profile.parent.mkdir(parents=True, exist_ok=True)
    aliases = "".join(f"alias {Path(p).name}={FULL_BIN}/{Path(p).name}\n"
                      for p in recipe.shadows)
    profile.write_text(PROFILE_PATH.format(name=recipe.name) + aliases)
    os.chmod(profile, 0o644)


def concat(files: Path, path: str, include: Iterable[str], mode: int, remove: bool,
           where: str) -> None:
    """Join the staged files matching INCLUDE (path order) into PATH."""
    parts = [rel for rel in select(walk_entries(files), include, [])
             if (files / rel).is_file() and not (files / rel).is_symlink()]
    if not parts:
        raise BuildError(f"{where}: include {list(include)} matches no staged file")
    dest = files / path.lstrip("/")
    data = b"".join((files / rel).read_bytes() for rel in parts)
    if remove:
        for rel in parts:
            (files / rel).unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    os.chmod(dest, mode)


# Users a recipe declares ([[user]]): BusyBox has no adduser in MixOS images, so the
# lines are written directly, with the first id in 100..999 free in both files.
ADD_USER = """\
if ! grep -q '^{name}:' /etc/passwd; then
    id=100
    while cut -d: -f3 /etc/passwd /etc/group | grep -qx "$id"; do id=$((id + 1)); done
    [ "$id" -le 999 ] || {{ echo "no free system id for {name}" >&2; exit 1; }}
    grep -q '^{name}:' /etc/group || echo "{name}:x:$id:" >> /etc/group
    gid=$(grep '^{name}:' /etc/group | cut -d: -f3)
    echo "{name}:x:$id:$gid:{name}:{home}:{shell}" >> /etc/passwd
    echo "{name}:!:0::::::" >> /etc/shadow
fi
"""
DEL_USER = """\
for f in /etc/passwd /etc/group /etc/shadow; do
    grep -v '^{name}:' "$f" > "$f.mix-new" || true
    cat "$f.mix-new" > "$f" && rm -f "$f.mix-new"
done
"""


def user_scripts(recipe: Recipe) -> dict[str, str]:
    """The post-install/post-remove text that makes and removes RECIPE's users."""
    if not recipe.users:
        return {}
    add = "".join(ADD_USER.format(name=u.name, home=u.home, shell=u.shell)
                  for u in recipe.users)
    delete = "".join(DEL_USER.format(name=u.name) for u in recipe.users)
    return {"post-install": add, "post-remove": delete}


def stage_scripts(recipe: Recipe, scripts: Path) -> None:
    generated = user_scripts(recipe)
    for key in sorted(set(recipe.scripts) | set(generated)):
        scripts.mkdir(exist_ok=True)
        own = (recipe.directory / recipe.scripts[key]).read_text() if key in recipe.scripts else ""
        if key in generated:
            # The users exist before the recipe's own script runs (and go after it).
            body = own.split("\n", 1)[1] if own.startswith("#!") else own
            text = "#!/bin/sh\nset -e\n" + (generated[key] + body if key == "post-install"
                                              else body + generated[key])
            (scripts / key).write_text(text)
        else:
            shutil.copyfile(recipe.directory / recipe.scripts[key], scripts / key)
        os.chmod(scripts / key, 0o755)
