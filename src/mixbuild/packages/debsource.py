"""Debian source packages as recipe inputs: fetched with `apt-get source` through a
private apt configuration, unpacked with Debian's patches applied, and built by the
recipe's own script, with the result cached by a key of everything that went in.

The host's apt configuration is read, never changed: the deb-src lines are derived
at run time from its deb sources (same mirrors, same Signed-By keys) and written,
with their own index lists, under $MIXOS_CACHE/debsrc/apt/. apt checks the
signature of the Sources index and the hashes of the fetched files against it, and
`dpkg-source -x` checks the files against the .dsc before it applies the patches.

    $MIXOS_CACHE/debsrc/<source>_<version>/        .dsc, .orig.tar.*, .debian.tar.*
    $MIXOS_CACHE/debsrc/unpacked/<source>_<version>/tree/   dpkg-source -x output
    $MIXOS_CACHE/debsrc/built/<recipe>-<key>/       what the build script installed
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from mixbuild.common import BuildError, cache_dir, log, run, step, unpack_once
from mixbuild.packages.debian import DebPackage
from mixbuild.packages.recipe import DebianSourceBuild, Recipe

# Bump when the way a source build runs changes (what the script is given).
BUILD_PROTOCOL = 1
# Host tools whose version goes into the build key: a static program carries
# libc6-dev's libc.a, so a glibc update rebuilds it.
TOOLCHAIN_PACKAGES = ("gcc", "binutils", "libc6-dev", "dpkg-dev")
BUILD_TIMEOUT = 3600.0


def debsrc_dir() -> Path:
    return cache_dir() / "debsrc"


def _strip_epoch(version: str) -> str:
    return re.sub(r"^[0-9]+:", "", version)


def deb_src_sources(sources_list: Path, parts: Path) -> tuple[str, str]:
    """The host's deb sources as deb-src: (one-line sources.list text, deb822 text),
    each line or stanza otherwise as written (Signed-By and options kept)."""
    one_line: list[str] = []
    stanzas: list[str] = []
    files = ([sources_list] if sources_list.is_file() else []) + sorted(parts.glob("*"))
    for path in files:
        if path.suffix == ".list" or path == sources_list:
            for line in path.read_text().splitlines():
                words = line.split(None, 1)
                if len(words) == 2 and words[0] == "deb":
                    one_line.append(f"deb-src {words[1]}")
        elif path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                lines = [ln for ln in stanza.splitlines() if not ln.startswith("#")]
                fields = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
                          for ln in lines if ":" in ln and not ln[:1].isspace()}
                if "deb" not in fields.get("types", "").split() \
                        or fields.get("enabled", "yes").lower() == "no":
                    continue
                stanzas.append("\n".join("Types: deb-src" if ln.lower().startswith("types:")
                                         else ln for ln in lines))
    if not one_line and not stanzas:
        raise BuildError(f"no 'deb' sources in {sources_list} or {parts}/*.list|*.sources; "
                         "source packages are fetched from the same places")
    return "\n".join(one_line) + "\n", "\n\n".join(stanzas) + "\n"


class PrivateApt:
    """apt-get with its own deb-src sources and lists under $MIXOS_CACHE/debsrc/apt;
    the host's /etc/apt and /var/lib/apt stay as they are."""

    def __init__(self) -> None:
        self.root = debsrc_dir() / "apt"
        self.parts = self.root / "sources.list.d"
        self.lists = self.root / "lists"
        self._updated = False

    def options(self) -> list[str]:
        return ["-o", "Dir::Etc::SourceList=/dev/null",
                "-o", f"Dir::Etc::SourceParts={self.parts}",
                "-o", f"Dir::State::Lists={self.lists}",
                "-o", f"Dir::Cache={self.root / 'cache'}",
                "-o", "APT::Sandbox::User=root",
                "-o", "APT::Get::AllowUnauthenticated=false"]

    def update(self) -> None:
        """Write the deb-src sources from the host's configuration and fetch their
        (signed) Sources indexes; once per run."""
        if self._updated:
            return
        out = run(["apt-config", "shell", "LIST", "Dir::Etc::SourceList/f",
                   "PARTS", "Dir::Etc::SourceParts/d"], capture=True).stdout
        conf = dict(re.findall(r"^(LIST|PARTS)='([^']*)'$", out, re.MULTILINE))
        one_line, deb822 = deb_src_sources(Path(conf.get("LIST", "/etc/apt/sources.list")),
                                           Path(conf.get("PARTS", "/etc/apt/sources.list.d")))
        self.parts.mkdir(parents=True, exist_ok=True)
        (self.lists / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (self.parts / "mixos-src.list").write_text(one_line)
        (self.parts / "mixos-src.sources").write_text(deb822)
        with step("Fetching the signed Sources indexes (private apt lists)"):
            run(["apt-get", "update", "-q", "-o", "APT::Update::Error-Mode=any",
                 *self.options()], capture=True)
        self._updated = True

    def source(self, name: str, version: str, into: Path) -> None:
        run(["apt-get", "source", "--download-only", "-q", *self.options(),
             f"{name}={version}"], cwd=into, capture=True)


def fetch(pkg: DebPackage, apt: PrivateApt) -> Path:
    """The .dsc of PKG's source at its pinned version, downloaded once into the cache."""
    name = f"{pkg.source}_{_strip_epoch(pkg.source_version)}"
    target = debsrc_dir() / name
    dsc = target / f"{name}.dsc"

    def download(tmp: Path) -> None:
        apt.update()
        log(f"apt-get source --download-only {pkg.source}={pkg.source_version}")
        apt.source(pkg.source, pkg.source_version, tmp)
        if not (tmp / dsc.name).exists():
            raise BuildError(f"apt-get source did not produce {dsc.name} in {tmp}; is "
                             f"{pkg.source} {pkg.source_version} still in the archive?")

    unpack_once(target, download)  # downloads only the first time
    return dsc


def unpacked(dsc: Path) -> Path:
    """The source tree of DSC with Debian's patches applied, unpacked once."""
    def extract(tmp: Path) -> None:
        run(["dpkg-source", "--no-copy", "-x", dsc, tmp / "tree"], capture=True)

    return unpack_once(debsrc_dir() / "unpacked" / dsc.stem, extract) / "tree"


def toolchain_versions() -> str:
    """'gcc=4:12.2.0-3 binutils=2.40-2 ...' of the host (one dpkg-query call)."""
    out = run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n", *TOOLCHAIN_PACKAGES],
              capture=True).stdout
    return " ".join(sorted(out.split()))


def build_key(recipe: Recipe, build: DebianSourceBuild, pkg: DebPackage,
              toolchain: str) -> str:
    """A hash of the source version, the build script and its inputs, the toolchain."""
    h = hashlib.sha256()
    h.update(f"protocol={BUILD_PROTOCOL}\nsource={pkg.source}={pkg.source_version}\n"
             f"toolchain={toolchain}\n".encode())
    for rel in (build.script, *build.inputs):
        h.update(f"file {rel}\n".encode())
        h.update((recipe.directory / rel).read_bytes())
    return h.hexdigest()[:20]


def build(recipe: Recipe, spec: DebianSourceBuild, pkg: DebPackage, key: str,
          apt: PrivateApt) -> Path:
    """The tree SPEC's script installed into DESTDIR, from the cache when KEY is known.

    The script runs with `sh -eu` in a scratch copy of the patched source, with
    DESTDIR (an empty directory), RECIPE_DIR, JOBS and SOURCE_DATE_EPOCH set."""
    out = debsrc_dir() / "built" / f"{recipe.name}-{key}"
    if (out / ".complete").exists():
        return out
    tree = unpacked(fetch(pkg, apt))

    def compile_into(dest: Path) -> None:
        scratch = Path(tempfile.mkdtemp(prefix=f".{recipe.name}-build-", dir=out.parent))
        try:
            work = scratch / "src"
            shutil.copytree(tree, work, symlinks=True)
            script = recipe.directory / spec.script
            with step(f"Building {pkg.source} {pkg.source_version} with {script.name}"):
                run(["sh", "-eu", script], cwd=work, capture=True, timeout=BUILD_TIMEOUT,
                    env={"DESTDIR": str(dest), "RECIPE_DIR": str(recipe.directory),
                         "JOBS": str(os.cpu_count() or 1)})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not any(dest.iterdir()):
            raise BuildError(f"{recipe.path}: {shlex.quote(spec.script)} installed nothing "
                             "into $DESTDIR")

    out.parent.mkdir(parents=True, exist_ok=True)
    unpack_once(out, compile_into)
    for old in out.parent.glob(f"{recipe.name}-*"):
        if old != out and old.name[len(recipe.name) + 1:].isalnum():
            shutil.rmtree(old, ignore_errors=True)  # an older key of the same recipe
    return out
