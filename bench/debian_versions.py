"""Where mix's version ordering and dpkg's disagree, measured on Debian's whole archive.

    PYTHONPATH=src .venv/bin/python bench/debian_versions.py [--lists GLOB]

For every versioned relation (Depends, Pre-Depends, Conflicts, Breaks) in apt's
lists and every package or versioned provide of the name it targets, decide
"does this version satisfy the relation?" twice: with dpkg's rules on the
original Debian versions (bench/plan_check.dpkg_compare), and with mix's rules
(mix.version.matches) on the versions bench/debian_index.py writes. Prints the
number of decisions and every disagreement (with the versions), so the cost of
mapping Debian onto mix's RPM-style ordering is a measured number, not a guess.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections import defaultdict
from pathlib import Path

from debian_index import DEFAULT_LISTS, mix_version, read_list, relation_version, stanzas
from plan_check import _DEB_TEST, dpkg_compare

from mix.version import matches

MIX_OP = {"<<": "<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">", "<": "<=", ">": ">="}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lists", default=DEFAULT_LISTS)
    ap.add_argument("--show", type=int, default=20, help="disagreements to print")
    args = ap.parse_args(argv)
    all_stanzas = [st for p in sorted(glob.glob(args.lists)) for st in stanzas(read_list(Path(p)))]
    # name -> Debian versions that a versioned relation on it is checked against
    versions: dict[str, set[str]] = defaultdict(set)
    for st in all_stanzas:
        versions[st["Package"]].add(st["Version"])
        for clause in _raw_clauses(st.get("Provides", "")):
            for name, op, ver in clause:
                if op == "=" and ver is not None:
                    versions[name].add(ver)
    relations: set[tuple[str, str, str]] = set()
    for st in all_stanzas:
        for field in ("Pre-Depends", "Depends", "Conflicts", "Breaks"):
            for clause in _raw_clauses(st.get(field, "")):
                for name, op, ver in clause:
                    if op is not None and ver is not None:
                        relations.add((name, op, ver))
    decisions = 0
    disagreements = []
    for name, op, ver in sorted(relations):
        for candidate in sorted(versions.get(name, ())):
            decisions += 1
            deb = _DEB_TEST[op](dpkg_compare(candidate, ver))
            mix = matches(mix_version(candidate), MIX_OP[op], relation_version(ver))
            if deb != mix:
                disagreements.append((name, candidate, op, ver, deb, mix))
    print(
        f"{len(relations)} distinct versioned relations x candidate versions = {decisions} "
        f"decisions; mix and dpkg disagree on {len(disagreements)}"
    )
    for name, candidate, op, ver, deb, mix in disagreements[: args.show]:
        print(f"  {name} {candidate} {op} {ver}: dpkg {deb}, mix {mix}")
    print(ordering_census(all_stanzas))
    return 0


def ordering_census(all_stanzas: list[dict[str, str]], pairs: int = 200_000) -> str:
    """Order agreement on versions of the same package, and on random version pairs."""
    import itertools
    import random

    from mix.version import compare

    by_name: dict[str, set[str]] = defaultdict(set)
    for st in all_stanzas:
        by_name[st["Package"]].add(st["Version"])

    def agree(a: str, b: str) -> bool:
        d = dpkg_compare(a, b)
        return (d > 0) - (d < 0) == compare(mix_version(a), mix_version(b))

    same = [p for vs in by_name.values() for p in itertools.combinations(sorted(vs), 2)]
    same_bad = sum(not agree(a, b) for a, b in same)
    everything = sorted({v for vs in by_name.values() for v in vs})
    rng = random.Random(3)
    rand_bad = sum(not agree(rng.choice(everything), rng.choice(everything)) for _ in range(pairs))
    return (
        f"{len(everything)} distinct versions; versions of the same package ordered "
        f"differently: {same_bad} of {len(same)} pairs; random pairs: {rand_bad} of {pairs}"
    )


def _raw_clauses(field: str) -> list[list[tuple[str, str | None, str | None]]]:
    """Relations with Debian operators and versions (not mapped to mix yet)."""
    from debian_index import _ATOM

    out = []
    for clause in field.split(","):
        if clause.strip():
            atoms = []
            for atom in clause.split("|"):
                m = _ATOM.match(atom)
                if m is None:
                    raise SystemExit(f"debian_versions: cannot read relation {atom!r}")
                atoms.append((m.group("name"), m.group("op"), m.group("ver")))
            out.append(atoms)
    return out


if __name__ == "__main__":
    sys.exit(main())
