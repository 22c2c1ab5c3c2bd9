"""Kernel stage: configure and build the MixOS Linux kernel from Debian's linux-source-6.1.

Inputs: the source package (its version), the upstream tinyconfig and kvm_guest fragments
of that source, the MixOS fragments in configs/kernel/, and RECIPE_VERSION below.
Output: artifacts/kernel/{bzImage,config,version,System.map,cmdline}, copied from a cache entry
$MIXOS_CACHE/kernel/<key>/ where key is a hash of all inputs, so a rebuild with unchanged
inputs takes seconds. The source is unpacked once per version under $MIXOS_CACHE/src/, and
objects live in $MIXOS_CACHE/kernel/obj-<version>/ so that a changed fragment rebuilds
incrementally.

Exit status: 0 built (or taken from the cache), 1 build failed, 2 the configuration does
not honour a fragment (the missing options are listed).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mixbuild.images import kconfig

# Bump when the way the kernel is built changes (not the fragments: they are hashed).
RECIPE_VERSION = 2  # 2: System.map among the products

PROJECT = Path(__file__).resolve().parents[3]
FRAGMENT_DIR = PROJECT / "configs" / "kernel"
CMDLINE_FILE = FRAGMENT_DIR / "cmdline"
ARTIFACTS = PROJECT / "artifacts" / "kernel"

SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
SOURCE_TOPDIR = "linux-source-6.1"
# GCC's plugin headers, for the STACKLEAK plugin (hardening.config); make deps installs it.
PLUGIN_PACKAGE = "gcc-12-plugin-dev"

# Upstream fragments (paths inside the source tree) merged first, in this order:
# what `make tinyconfig` uses, then the KVM guest basics.
UPSTREAM_FRAGMENTS = (
    "kernel/configs/tiny-base.config",
    "kernel/configs/tiny.config",
    "arch/x86/configs/tiny.config",
    "kernel/configs/kvm_guest.config",
)
# MixOS fragments (configs/kernel/NAME.config) merged after them, in this order;
# hardening comes last so that it wins over anything before it.
FRAGMENTS = (
    "base", "virtio", "storage", "filesystems", "console",
    "netfilter", "netdevices", "containers", "hardening",
)
# System.map: the kernel has no symbol table of its own (no KALLSYMS), so oops
# traces are decoded with this one (docs/kernel.md, "Reading an oops").
PRODUCTS = ("bzImage", "config", "version", "System.map")

DEFAULT_EPOCH = 1767225600  # 2026-01-01: the build timestamp when SOURCE_DATE_EPOCH is unset


class KernelError(Exception):
    """A failure with a message for people: what failed and what to do."""


class ConfigError(KernelError):
    """The merged configuration does not honour the fragments."""


@dataclass(frozen=True)
class Source:
    version: str  # Debian version of the source package, e.g. 6.1.192-2
    tarball: Path


@dataclass(frozen=True)
class Layout:
    """Where the stage reads and writes, all under the cache directory."""

    cache: Path

    @property
    def tree_parent(self) -> Path:
        return self.cache / "src"

    def tree(self, source: Source) -> Path:
        return self.tree_parent / f"{SOURCE_PACKAGE}_{source.version}" / SOURCE_TOPDIR

    def obj(self, source: Source) -> Path:
        """Object directory, one per source version (objects of two trees never mix)."""
        return self.cache / "kernel" / f"obj-{source.version}"

    def entry(self, key: str) -> Path:
        return self.cache / "kernel" / key

    @property
    def lock(self) -> Path:
        return self.cache / "kernel" / ".lock"


def log(message: str) -> None:
    print(f"mixbuild kernel: {message}", flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    log(f"{title} ...")
    start = time.monotonic()
    yield
    log(f"{title}: done in {time.monotonic() - start:.1f} s")


def run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
        env: dict[str, str] | None = None, quiet: bool = False) -> str:
    """Run a command with stdin closed; on failure raise with the exact command line."""
    argv = [str(part) for part in cmd]
    proc = subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, text=True,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None, check=False,
    )
    if proc.returncode != 0:
        where = f"cd {shlex.quote(str(cwd))} && " if cwd else ""
        tail = "\n".join((proc.stdout or "").splitlines()[-40:])
        raise KernelError(f"command failed (exit {proc.returncode}):\n  {where}{shlex.join(argv)}"
                          + (f"\n{tail}" if tail else ""))
    return proc.stdout or ""


def cache_dir() -> Path:
    return Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos"))


def find_source() -> Source:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", SOURCE_PACKAGE],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0 or not out.stdout.strip() or not SOURCE_TARBALL.exists():
        raise KernelError(f"{SOURCE_PACKAGE} is not installed ({SOURCE_TARBALL} missing); "
                          "run 'make deps'")
    return Source(out.stdout.strip(), SOURCE_TARBALL)


def fragment_paths() -> list[Path]:
    """The MixOS fragments in merge order; a .config file not listed in FRAGMENTS is an error."""
    listed = [FRAGMENT_DIR / f"{name}.config" for name in FRAGMENTS]
    missing = [p.name for p in listed if not p.exists()]
    unlisted = sorted(p.name for p in FRAGMENT_DIR.glob("*.config") if p not in listed)
    if missing or unlisted:
        raise KernelError(f"configs/kernel/: missing fragments {missing}, fragments not in "
                          f"mixbuild.images.kernel.FRAGMENTS {unlisted}; keep the two in step")
    return listed


def compiler_version() -> str:
    return run(["gcc", "--version"], quiet=True).splitlines()[0]


def cache_key(source_version: str, fragments: Sequence[Path], compiler: str) -> str:
    """Hash of every input that changes the built kernel."""
    digest = hashlib.sha256()
    digest.update(f"recipe {RECIPE_VERSION}\nsource {source_version}\ncc {compiler}\n".encode())
    for path in fragments:
        digest.update(f"fragment {path.name} {len(path.read_bytes())}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_env() -> dict[str, str]:
    """A small, fixed environment: reproducible timestamps, user and host names."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": str(epoch),
        "KBUILD_BUILD_TIMESTAMP": stamp,
        "KBUILD_BUILD_USER": "mixos",
        "KBUILD_BUILD_HOST": "mixos",
        "KBUILD_BUILD_VERSION": "1",
    }


def unpack_source(source: Source, layout: Layout) -> Path:
    """The source tree for this version, unpacked once (atomically, by rename)."""
    tree = layout.tree(source)
    if tree.is_dir():
        return tree
    layout.tree_parent.mkdir(parents=True, exist_ok=True)
    with step(f"unpacking {source.tarball} ({source.version})"):
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=layout.tree_parent))
        try:
            run(["tar", "-xf", source.tarball, "-C", tmp])
            if not (tmp / SOURCE_TOPDIR / "Makefile").exists():
                raise KernelError(f"{source.tarball} has no {SOURCE_TOPDIR}/Makefile")
            tmp.rename(tree.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tree


def gcc_plugin_dir() -> Path:
    """Where GCC keeps its plugin headers (Kconfig looks for include/plugin-version.h there)."""
    return Path(run(["gcc", "-print-file-name=plugin"], quiet=True).strip())


def require_plugin_headers(requests: dict[str, tuple[str | None, str]], plugin_dir: Path) -> None:
    """Kconfig drops CONFIG_GCC_PLUGINS without a word when GCC's plugin headers are
    missing; say so before configuring, with the package that provides them."""
    wanted, origin = requests.get("CONFIG_GCC_PLUGINS", (None, ""))
    header = plugin_dir / "include" / "plugin-version.h"
    if wanted == "y" and not header.is_file():
        raise KernelError(f"{origin} asks for GCC plugins (CONFIG_GCC_PLUGINS=y) but {header} "
                          f"does not exist; install {PLUGIN_PACKAGE} ('make deps')")


def configure(tree: Path, obj: Path, fragments: Sequence[Path], env: dict[str, str]) -> Path:
    """Write obj/.config: all-no base + upstream tiny/kvm_guest + MixOS fragments; verify it."""
    requests = kconfig.merged_requests(kconfig.read_fragments(fragments))
    require_plugin_headers(requests, gcc_plugin_dir())
    obj.mkdir(parents=True, exist_ok=True)
    upstream = [tree / rel for rel in UPSTREAM_FRAGMENTS]
    # -n: every symbol no fragment mentions starts from "no" (allnoconfig), as tinyconfig does.
    run([tree / "scripts/kconfig/merge_config.sh", "-n", "-O", obj, *upstream, *fragments],
        cwd=tree, env=env, quiet=True)
    run(["make", f"O={obj}", "olddefconfig"], cwd=tree, env=env, quiet=True)
    config = obj / ".config"
    missing = kconfig.mismatches(requests, kconfig.parse_config(config.read_text()))
    if missing:
        lines = "\n  ".join(str(m) for m in missing)
        raise ConfigError(f"{len(missing)} requested options did not end up in {config} "
                          f"(unmet dependencies or typos; fix configs/kernel/):\n  {lines}")
    return config


def compile_kernel(tree: Path, obj: Path, jobs: int, env: dict[str, str]) -> tuple[Path, str]:
    run(["make", f"O={obj}", f"-j{jobs}", "bzImage"], cwd=tree, env=env)
    release = run(["make", "-s", f"O={obj}", "kernelrelease"], cwd=tree, env=env,
                  quiet=True).strip()
    return obj / "arch/x86/boot/bzImage", release


def store(entry: Path, bzimage: Path, config: Path, release: str, system_map: Path) -> None:
    """Fill the cache entry atomically: write beside it, then rename."""
    tmp = entry.with_name(entry.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(bzimage, tmp / "bzImage")
    shutil.copyfile(config, tmp / "config")
    shutil.copyfile(system_map, tmp / "System.map")
    (tmp / "version").write_text(release + "\n")
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)


def publish(entry: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in PRODUCTS:
        shutil.copyfile(entry / name, out / name)
    shutil.copyfile(CMDLINE_FILE, out / "cmdline")


def cached_entry(layout: Layout | None = None) -> Path:
    """The cache entry the current inputs map to (it may not exist yet)."""
    layout = layout or Layout(cache_dir())
    return layout.entry(cache_key(find_source().version, fragment_paths(), compiler_version()))


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One kernel build at a time per cache (the object directory is shared)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(jobs: int, force: bool, config_only: bool, out: Path) -> Path:
    started = time.monotonic()
    layout = Layout(cache_dir())
    source = find_source()
    fragments = fragment_paths()
    if len(CMDLINE_FILE.read_text().strip().splitlines()) != 1:
        raise KernelError(f"{CMDLINE_FILE} must hold exactly one line of kernel arguments")
    key = cache_key(source.version, fragments, compiler_version())
    entry = layout.entry(key)
    env = build_env()
    with locked(layout.lock):
        if entry.is_dir() and not force and not config_only:
            log(f"cached: {entry}")
        else:
            tree = unpack_source(source, layout)
            with step("configuring (tinyconfig + kvm_guest + " + ", ".join(FRAGMENTS) + ")"):
                config = configure(tree, layout.obj(source), fragments, env)
            if config_only:
                log(f"configuration verified: {config}")
                return config
            with step(f"compiling bzImage with {jobs} jobs"):
                bzimage, release = compile_kernel(tree, layout.obj(source), jobs, env)
            store(entry, bzimage, config, release, layout.obj(source) / "System.map")
        publish(entry, out)
    size = (out / "bzImage").stat().st_size
    release = (out / "version").read_text().strip()
    log(f"{out}/bzImage: Linux {release}, {size / 1e6:.2f} MB; "
        f"stage took {time.monotonic() - started:.1f} s")
    return out / "bzImage"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild kernel", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel compile jobs")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--config-only", action="store_true",
                        help="only write and verify the .config (in the object directory)")
    parser.add_argument("--out", type=Path, default=ARTIFACTS, help="where to put the products")
    args = parser.parse_args(argv)
    try:
        build(args.jobs, args.force, args.config_only, args.out)
    except ConfigError as error:
        print(f"mixbuild kernel: {error}", file=sys.stderr)
        return 2
    except KernelError as error:
        print(f"mixbuild kernel: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
