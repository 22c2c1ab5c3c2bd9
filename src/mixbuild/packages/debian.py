"""Debian packages as recipe inputs: candidate versions from the host's apt,
`apt-get download` into a cache, `dpkg-deb -x` unpacked once, and the mapping of
Debian versions into mix's RPM-style ordering."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mix.version import parse_version
from mixbuild.common import BuildError, cache_dir, log, run, unpack_once

_UPSTREAM_BAD = re.compile(r"[^A-Za-z0-9._+~^]")
_RELEASE_BAD = re.compile(r"[^A-Za-z0-9._+~^]")


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str  # Debian version, e.g. 1:9.2p1-2+deb12u10
    arch: str
    source: str = ""  # the source package it is built from (default: the same name)
    source_version: str = ""  # its version (default: the same version; differs for binNMUs)
    section: str = ""  # "libs" for shared-library packages
    summary: str = ""  # the first line of Description
    depends: str = ""  # Pre-Depends and Depends, as apt-cache shows them

    @property
    def filename(self) -> str:
        # apt-get download's own naming: the epoch colon is URL-encoded.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def mix_version(debian_version: str, revision: int = 0) -> str:
    """Map a Debian version onto a valid mix (RPM-ordered) version.

    Epoch and revision keep their places; '-' inside the upstream part and any
    character mix does not allow become '_' (upstream) or '.' (revision).
    REVISION > 0 appends '+mixosN' to the release."""
    m = re.match(r"([0-9]+):", debian_version)
    epoch, rest = (m.group(1), debian_version[m.end():]) if m else ("", debian_version)
    if "-" in rest:
        upstream, release = rest.rsplit("-", 1)
    else:
        upstream, release = rest, ""
    upstream = _UPSTREAM_BAD.sub("_", upstream)
    release = _RELEASE_BAD.sub(".", release)
    if revision:
        release = f"{release}+mixos{revision}" if release else f"mixos{revision}"
    text = upstream
    if epoch:
        text = f"{epoch}:{text}"
    if release:
        text = f"{text}-{release}"
    parse_version(text)  # raises InvalidVersion naming the text if the mapping failed
    return text


def debs_dir() -> Path:
    return cache_dir() / "debs"


def candidates(names: list[str]) -> dict[str, DebPackage]:
    """The version apt would install of each package (one apt-cache call)."""
    if not names:
        return {}
    out = run(["apt-cache", "show", "--no-all-versions", *sorted(set(names))],
              capture=True).stdout
    found: dict[str, DebPackage] = {}
    for stanza in out.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines()
            if ": " in line and not line.startswith(" ")
        )
        if "Package" in fields and fields["Package"] not in found:
            # "Source: busybox (1:1.35.0-4+deb12u1)": name, and version when it differs
            source = fields.get("Source", fields["Package"]).split()
            source_version = source[1].strip("()") if len(source) > 1 else fields["Version"]
            depends = ", ".join(fields[k] for k in ("Pre-Depends", "Depends") if k in fields)
            summary = fields.get("Description", fields.get("Description-en", ""))
            found[fields["Package"]] = DebPackage(fields["Package"], fields["Version"],
                                                  fields.get("Architecture", "amd64"),
                                                  source[0], source_version,
                                                  fields.get("Section", ""), summary, depends)
    missing = sorted(set(names) - set(found))
    if missing:
        raise BuildError(f"Debian package(s) not known to apt: {', '.join(missing)}; "
                         "run 'apt-get update' or fix the recipe")
    return found


LIBRARY_SECTIONS = ("libs", "oldlibs")


def depends_clauses(depends: str) -> list[list[str]]:
    """"a (>= 1) | b, c:any" -> [["a", "b"], ["c"]]: the package names of each clause."""
    clauses = []
    for clause in depends.split(","):
        names = [re.split(r"[\s(:\[]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]
        if any(names):
            clauses.append([n for n in names if n])
    return clauses


def sections(names: list[str]) -> dict[str, str]:
    """The Section of each of NAMES that apt knows as a real package (virtual ones,
    e.g. debconf-2.0, are left out)."""
    if not names:
        return {}
    # apt-cache exits 100 when one name is purely virtual, but still shows the others.
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(set(names))],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                         check=False).stdout
    found: dict[str, str] = {}
    for stanza in out.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if "Package" in fields:
            found.setdefault(fields["Package"], fields.get("Section", ""))
    return found


def download(pkgs: list[DebPackage]) -> dict[str, Path]:
    """Fetch PKGS into $MIXOS_CACHE/debs (already cached ones are not fetched)."""
    target = debs_dir()
    target.mkdir(parents=True, exist_ok=True)
    paths = {p.name: target / p.filename for p in pkgs}
    todo = [p for p in pkgs if not paths[p.name].exists()]
    if todo:
        log(f"apt-get download {' '.join(p.name for p in todo)}")
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=target))
        run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
             *[f"{p.name}={p.version}" for p in todo]], cwd=tmp, capture=True)
        for p in todo:
            got = tmp / p.filename
            if not got.exists():
                raise BuildError(f"apt-get download did not produce {p.filename} in {tmp}")
            got.rename(paths[p.name])
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def unpacked(deb: Path) -> Path:
    """The file tree of DEB, unpacked once into $MIXOS_CACHE/debs/unpacked/."""
    def extract(tmp: Path) -> None:
        run(["dpkg-deb", "-x", deb, tmp], capture=True)

    return unpack_once(debs_dir() / "unpacked" / deb.stem, extract)


def fetch(names: list[str]) -> dict[str, tuple[DebPackage, Path]]:
    """Candidate, download and unpack NAMES: name -> (package, unpacked tree)."""
    pkgs = candidates(names)
    debs = download(list(pkgs.values()))
    return {n: (pkgs[n], unpacked(debs[n])) for n in names}
