"""PyPI wheels as recipe inputs: `pip download` of a pinned cp311 manylinux wheel
into $MIXOS_CACHE/wheels (fetched once), unzipped into a cached tree."""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from mixbuild.common import BuildError, cache_dir, log, run, unpack_once

PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_5_x86_64", "manylinux1_x86_64")


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


def _pin(requirement: str) -> tuple[str, str]:
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", requirement.strip())
    if not m:
        raise BuildError(f"wheel requirement {requirement!r} must be pinned as NAME==VERSION, "
                         "so that builds are reproducible")
    return m.group(1), m.group(2)


def _cached(name: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for p in sorted(wheels_dir().glob("*.whl")):
        parts = p.name.split("-")
        if re.sub(r"[-_.]+", "_", parts[0]).lower() == stem and parts[1] == version:
            return p
    return None


def download(requirement: str) -> Path:
    """The wheel file for a pinned REQUIREMENT (cp311, manylinux x86_64)."""
    name, version = _pin(requirement)
    found = _cached(name, version)
    if found:
        return found
    wheels_dir().mkdir(parents=True, exist_ok=True)
    log(f"pip download {requirement}")
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
         *platform_args, "-d", wheels_dir(), requirement], capture=True, timeout=300)
    found = _cached(name, version)
    if not found:
        raise BuildError(f"pip download {requirement} left no matching wheel in {wheels_dir()}")
    return found


def unpacked(wheel: Path) -> Path:
    """The tree of WHEEL, unzipped once beside the cache."""
    def extract(tmp: Path) -> None:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                target = (tmp / info.filename).resolve()
                if not str(target).startswith(str(tmp.resolve()) + "/"):
                    raise BuildError(f"{wheel}: member {info.filename!r} escapes the tree")
                z.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    target.chmod(mode)

    return unpack_once(wheels_dir() / "unpacked" / wheel.stem, extract)
