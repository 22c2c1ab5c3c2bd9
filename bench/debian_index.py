"""Turn Debian's package lists into a signed mix index (metadata only), for resolver scale tests.

    PYTHONPATH=src .venv/bin/python bench/debian_index.py OUT_DIR [--lists GLOB] [--key KEY]

reads every ``/var/lib/apt/lists/*_Packages*`` (plain, .lz4, .gz, .xz), maps
each stanza onto a mix index entry and writes ``OUT_DIR/repo/index.json`` +
``index.json.sig`` with ``mix.index.write_index`` (a key pair is generated in
``OUT_DIR/keys/`` unless ``--key`` is given).

Mapping (what differs from Debian is written out in docs/benchmarks.md,
"Resolver at Debian scale"):
- Package, Architecture (amd64 -> x86_64, all -> noarch), Description (short).
- Version: ``[epoch:]upstream[-revision]``; a missing revision becomes ``-0``
  (dpkg treats them as equal, and a release on both sides makes libsolv compare
  full versions as dpkg does); separators that dpkg ranks after the end of a
  version become ``^`` (see _mix_part), other ``-`` and ``:`` become ``_``.
- Depends + Pre-Depends -> dependencies (``a (>= 1) | b`` -> ``a>=1-0 | b``;
  ``<<``/``>>`` -> ``<``/``>``; ``:any``/``:native`` qualifiers dropped).
- Provides -> provides; Conflicts + Breaks -> conflicts.
- Debian's rule that an unversioned provide never satisfies (or conflicts
  with) a versioned relation is kept by renaming: an unversioned provide of X
  becomes ``X@any``, an unversioned relation on such an X becomes
  ``X | X@any`` (dependency) or both ``X`` and ``X@any`` (conflict), and
  versioned relations keep ``X``, which unversioned providers no longer offer.
  (mix itself follows libsolv's RPM rule, where they would match.)
- Replaces -> replaces only for names the package also Conflicts/Breaks: in
  Debian, Replaces alone only allows overwriting files, while mix's replaces
  removes the replaced package (Debian's "complete replacement" needs both).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import lzma
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_LISTS = "/var/lib/apt/lists/*_Packages*"
ARCHES = {"amd64": "x86_64", "all": "noarch"}
DEB_OPS = {"<<": "<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">", "<": "<=", ">": ">="}
_ATOM = re.compile(
    r"\s*(?P<name>[a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9\-]+)?\s*"
    r"(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<ver>[^)\s]+)\s*\))?\s*(?:\[[^\]]*\])?\s*$"
)


def run(cmd: list[str]) -> bytes:
    """Run a command and return its stdout; on failure say exactly what was run."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"debian_index: command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


def read_list(path: Path) -> str:
    """One apt list file's text, whatever its compression."""
    if path.suffix == ".lz4":
        return run(["lz4", "-dc", str(path)]).decode("utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    return path.read_text(encoding="utf-8", errors="replace")


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """RFC822-style stanzas of a Packages file; continuation lines are joined."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                if key is not None and key != "Description":
                    fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Package" in fields:
            yield fields


def mix_version(deb: str) -> str:
    """A Debian version in mix syntax, ordered as dpkg orders it wherever the two can agree."""
    epoch = ""
    m = re.match(r"^([0-9]+):(.*)$", deb)
    if m:
        epoch, deb = m.group(1) + ":", m.group(2)
    upstream, sep, revision = deb.rpartition("-")
    if not sep:
        upstream, revision = deb, "0"
    return f"{epoch}{_mix_part(upstream)}-{_mix_part(revision)}"


def relation_version(deb: str) -> str:
    """A version in a relation: like mix_version, plus dpkg's "every revision of X" bounds.

    ``<< 2.0.3-z`` or ``<< 1:2.39.5-.`` use a revision that sorts after every
    numeric revision in dpkg (letters and ``.`` beat digits there, not in mix);
    they become ``2.0.3^``, which sorts after every ``2.0.3-N`` and before ``2.0.4``.
    """
    m = re.match(r"^(?:([0-9]+):)?(.*)-([^-]*)$", deb)
    if m is not None and re.fullmatch(r"[A-Za-z]+|[.+]+", m.group(3)):
        epoch = f"{m.group(1)}:" if m.group(1) else ""
        return f"{epoch}{_mix_part(m.group(2))}^"
    return mix_version(deb)


# A separator that dpkg ranks after the end of a version: "+" or "-" before a digit
# ("1.0+1", "12-2021"), any separator before "~" ("1.0+~cs2"), or at the very end ("1.0+").
_AFTER_END = re.compile(r"(?<=[A-Za-z0-9])(?:[+-](?=[0-9])|[+._-]+(?=~)|[+._-]+$)")


def _mix_part(part: str) -> str:
    """An upstream version or revision with dpkg's separators mapped onto mix's ordering.

    dpkg ranks characters as ``~`` < end < letters < ``+`` < ``-`` < ``.``,
    and compares them one by one; mix ignores separators except ``~`` (same
    meaning as in dpkg) and ``^`` (after the end, before anything else). Where
    dpkg's ranking matters most often, a separator becomes ``^``: ``+``/``-``
    before a digit (``1.0+1`` < ``1.0.1``, ``12-2021`` < ``12.2``), any run of
    separators before ``~`` (``1.0+~cs2`` > ``1.0``) or at the end (``1.0+`` >
    ``1.0-9``). Before a letter they stay plain separators (``1.0+dfsg``,
    ``2+b1`` > ``2b``, ``6.4.2-final`` > ``6.4.2+dfsg``): mix then compares the
    letters, which agrees with dpkg in the common cases. Other ``-`` become
    ``_`` and ``:`` becomes ``_``. What is left over is measured by
    bench/debian_versions.py.
    """
    part = _AFTER_END.sub("^", part)
    return part.replace("-", "_").replace(":", "_")


VIRTUAL = "@any"


def parse_atom(atom: str) -> tuple[str, str | None, str | None]:
    """``name:any (>> 1.0)`` -> ("name", ">", "1.0-0") in mix terms."""
    m = _ATOM.match(atom)
    if m is None:
        raise ValueError(f"cannot read Debian relation {atom!r}")
    if m.group("op") is None:
        return m.group("name"), None, None
    return m.group("name"), DEB_OPS[m.group("op")], relation_version(m.group("ver"))


def clauses(field: str) -> list[list[tuple[str, str | None, str | None]]]:
    """``a (>= 1) | b, c`` -> [[a>=1-0, b], [c]] as parsed atoms."""
    return [[parse_atom(a) for a in c.split("|")] for c in field.split(",") if c.strip()]


def _atom_text(name: str, op: str | None, ver: str | None) -> str:
    return name if op is None else f"{name}{op}{ver}"


def dependencies(field: str, unversioned: set[str]) -> list[str]:
    out = []
    for clause in clauses(field):
        atoms: list[str] = []
        for name, op, ver in clause:
            atoms.append(_atom_text(name, op, ver))
            if op is None and name in unversioned:
                atoms.append(name + VIRTUAL)
        out.append(" | ".join(atoms))
    return out


def conflicts(field: str, unversioned: set[str]) -> list[str]:
    out = []
    for clause in clauses(field):
        for name, op, ver in clause:
            out.append(_atom_text(name, op, ver))
            if op is None and name in unversioned:
                out.append(name + VIRTUAL)
    return out


def provides(field: str) -> list[str]:
    return [
        _atom_text(name, op, ver) if op is not None else name + VIRTUAL
        for clause in clauses(field)
        for name, op, ver in clause
    ]


def _names(rels: list[str]) -> set[str]:
    return {re.split(r"[<>=!]", r, maxsplit=1)[0].strip() for r in rels}


def entry(st: dict[str, str], unversioned: set[str]) -> dict[str, Any] | None:
    """The mix index entry for one stanza, or None for an architecture mix does not use.

    ``unversioned``: names that some package provides without a version.
    """
    arch = ARCHES.get(st.get("Architecture", ""))
    if arch is None:
        return None
    name, version = st["Package"], mix_version(st["Version"])
    deps = dependencies(st.get("Pre-Depends", ""), unversioned) + dependencies(
        st.get("Depends", ""), unversioned
    )
    conflict = conflicts(st.get("Conflicts", ""), unversioned) + conflicts(
        st.get("Breaks", ""), unversioned
    )
    conflicting = _names(conflict)
    replaces = [
        _atom_text(n, op, v)
        for clause in clauses(st.get("Replaces", ""))
        for n, op, v in clause
        if n in conflicting
    ]
    return {
        "name": name,
        "version": version,
        "arch": arch,
        "description": st.get("Description", ""),
        "dependencies": deps,
        "provides": provides(st.get("Provides", "")),
        "conflicts": conflict,
        "replaces": replaces,
        "size": int(st.get("Size", "0") or 0),
        "installed_size": int(st.get("Installed-Size", "0") or 0) * 1024,
        "sha256": st.get("SHA256", "0" * 64),
        # mix.index accepts [A-Za-z0-9+._~:%-] in file names: "^" is %-escaped.
        "filename": f"{name}-{version.replace('^', '%5e')}.{arch}.mixpkg",
        "debian_version": st["Version"],
    }


def convert(paths: list[Path]) -> list[dict[str, Any]]:
    """Entries of every list, one per (name, version, arch)."""
    all_stanzas = [st for path in paths for st in stanzas(read_list(path))]
    unversioned = {
        name
        for st in all_stanzas
        for clause in clauses(st.get("Provides", ""))
        for name, op, _ in clause
        if op is None
    }
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for st in all_stanzas:
        e = entry(st, unversioned)
        if e is not None:
            seen.setdefault((e["name"], e["version"], e["arch"]), e)
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output directory (repo/ and keys/ go there)")
    ap.add_argument("--lists", default=DEFAULT_LISTS, help=f"glob of apt lists ({DEFAULT_LISTS})")
    ap.add_argument("--key", type=Path, help="signing key (default: generate OUT/keys/debian.key)")
    ap.add_argument("--valid-days", type=int, default=30)
    args = ap.parse_args(argv)

    from mix.index import write_index
    from mix.keys import generate

    paths = sorted(Path(p) for p in glob.glob(args.lists) if not p.endswith(".diff"))
    if not paths:
        print(f"debian_index: no lists match {args.lists}; run 'apt-get update'", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    entries = convert(paths)
    t1 = time.monotonic()
    key = args.key
    if key is None:
        keys = args.out / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        key = keys / "debian.key"
        if not key.exists():
            generate(str(keys / "debian"))
    index = write_index(args.out / "repo", entries, key, args.valid_days)
    t2 = time.monotonic()
    print(
        f"{len(entries)} packages from {len(paths)} lists -> {index} "
        f"({index.stat().st_size / 1e6:.1f} MB; convert {t1 - t0:.1f} s, sign+write {t2 - t1:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
