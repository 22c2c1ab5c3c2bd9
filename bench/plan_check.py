"""Check that a mix plan leaves a consistent system: every dependency met, no conflict.

    PYTHONPATH=src .venv/bin/python bench/plan_check.py INDEX.json PLAN.json [--debian]

PLAN.json is the output of ``mix --json --simulate install ...`` (``{"plan": [...]}``)
applied to an empty root. The resulting set of packages is checked twice:
- with mix's rules (``mix.version``, itself cross-checked against libsolv in
  the unit tests), against the dependency fields of the index;
- with ``--debian``, against the original Debian relations of each package
  (Depends, Pre-Depends, Conflicts, Breaks) with dpkg's version ordering and
  Debian's provide rules, read again from apt's lists. This does not trust the
  converter's mapping at all.
The checker never asks libsolv: it is an independent judge of the solver.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mix.version import Dependency, parse_dependency

Entry = dict[str, Any]


def final_set(
    index: list[Entry], installed: list[Entry], plan: list[dict[str, Any]]
) -> list[Entry]:
    """The packages present after applying a ``--json`` plan to ``installed``."""
    by_key = {(e["name"], e["version"]): e for e in index}
    present = {e["name"]: e for e in installed}
    for step in plan:
        if step["action"] == "remove":
            present.pop(step["name"], None)
            continue
        entry = by_key.get((step["name"], step["version"]))
        if entry is None:
            raise SystemExit(f"plan_check: {step['name']} {step['version']} is not in the index")
        present[step["name"]] = entry
    return list(present.values())


class MixRules:
    """mix's matching: packages provide themselves; unversioned provides match any version."""

    def __init__(self, packages: Iterable[Entry]) -> None:
        self.providers: dict[str, list[tuple[Entry, str | None]]] = defaultdict(list)
        for e in packages:
            self.providers[e["name"]].append((e, e["version"]))
            for text in e.get("provides") or ():
                p = parse_dependency(text)
                self.providers[p.name].append((e, p.version if p.op == "=" else None))

    def satisfiers(self, dep: Dependency, exclude: Entry | None = None) -> list[Entry]:
        found = []
        for choice in dep.choices():
            for entry, version in self.providers.get(choice.name, ()):
                if entry is not exclude and choice.matches(choice.name, version):
                    found.append(entry)
        return found


def check_mix(packages: list[Entry]) -> list[str]:
    """Violations of the index's own dependencies, conflicts and replaces."""
    rules = MixRules(packages)
    problems = []
    names: dict[str, Entry] = {}
    for e in packages:
        if e["name"] in names:
            problems.append(
                f"two versions of {e['name']}: {names[e['name']]['version']}, {e['version']}"
            )
        names[e["name"]] = e
    for e in packages:
        nv = f"{e['name']}-{e['version']}"
        for text in e.get("dependencies") or ():
            if not rules.satisfiers(parse_dependency(text)):
                problems.append(f"{nv} requires {text}: not satisfied")
        for field in ("conflicts", "replaces"):
            for text in e.get(field) or ():
                hits = rules.satisfiers(parse_dependency(text), exclude=e)
                if hits:
                    others = ", ".join(f"{h['name']}-{h['version']}" for h in hits)
                    problems.append(f"{nv} {field} {text}: present: {others}")
    return problems


# ---- Debian's own rules ------------------------------------------------------------


def _order(c: str) -> int:
    if "0" <= c <= "9":
        return 0
    if ("a" <= c <= "z") or ("A" <= c <= "Z"):
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or revision."""
    i = j = 0
    na, nb = len(a), len(b)
    while i < na or j < nb:
        first_diff = 0
        while (i < na and not a[i].isdigit()) or (j < nb and not b[j].isdigit()):
            ac = _order(a[i]) if i < na else 0
            bc = _order(b[j]) if j < nb else 0
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < na and a[i] == "0":
            i += 1
        while j < nb and b[j] == "0":
            j += 1
        while i < na and a[i].isdigit() and j < nb and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < na and a[i].isdigit():
            return 1
        if j < nb and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def dpkg_compare(a: str, b: str) -> int:
    """dpkg --compare-versions, as a -/0/+ number."""

    def split(v: str) -> tuple[int, str, str]:
        epoch = 0
        if ":" in v and v.split(":", 1)[0].isdigit():
            e, v = v.split(":", 1)
            epoch = int(e)
        upstream, sep, revision = v.rpartition("-")
        return (epoch, upstream, revision) if sep else (epoch, v, "")

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


_DEB_TEST = {
    "<<": lambda r: r < 0,
    "<=": lambda r: r <= 0,
    "=": lambda r: r == 0,
    ">=": lambda r: r >= 0,
    ">>": lambda r: r > 0,
    "<": lambda r: r <= 0,
    ">": lambda r: r >= 0,
}


def _deb_atoms(field: str) -> list[list[tuple[str, str | None, str | None]]]:
    from debian_index import _ATOM  # the relation grammar only

    out = []
    for clause in field.split(","):
        if not clause.strip():
            continue
        atoms = []
        for atom in clause.split("|"):
            m = _ATOM.match(atom)
            if m is None:
                raise SystemExit(f"plan_check: cannot read Debian relation {atom!r}")
            atoms.append((m.group("name"), m.group("op"), m.group("ver")))
        out.append(atoms)
    return out


class DebianLists:
    """apt's lists, read once, keyed the way the converted index names packages."""

    def __init__(self, lists: str) -> None:
        import glob

        from debian_index import mix_version, read_list, stanzas

        self.by_key: dict[tuple[str, str], dict[str, str]] = {}
        for path in sorted(glob.glob(lists)):
            for st in stanzas(read_list(Path(path))):
                self.by_key.setdefault((st["Package"], mix_version(st["Version"])), st)


def check_debian(packages: list[Entry], lists: str | DebianLists) -> list[str]:
    """Violations of the packages' original Debian relations, judged by Debian's rules."""
    source = DebianLists(lists) if isinstance(lists, str) else lists
    chosen: list[dict[str, str]] = []
    problems = []
    for e in packages:
        st = source.by_key.get((e["name"], e["version"]))
        if st is None:
            problems.append(f"{e['name']}-{e['version']}: not found in the Debian lists")
        else:
            chosen.append(st)
    real: dict[str, list[dict[str, str]]] = defaultdict(list)
    virtual: dict[str, list[tuple[dict[str, str], str | None]]] = defaultdict(list)
    for st in chosen:
        real[st["Package"]].append(st)
        for clause in _deb_atoms(st.get("Provides", "")):
            for name, _, ver in clause:
                virtual[name].append((st, ver))

    def matches(name: str, op: str | None, ver: str | None, exclude: Any = None) -> list[str]:
        hits = []
        for st in real.get(name, ()):
            if st is not exclude and (
                op is None or _DEB_TEST[op](dpkg_compare(st["Version"], str(ver)))
            ):
                hits.append(st["Package"])
        for st, pver in virtual.get(name, ()):
            if st is exclude:
                continue
            # Debian: an unversioned provide only meets unversioned relations.
            if op is None or (pver is not None and _DEB_TEST[op](dpkg_compare(pver, str(ver)))):
                hits.append(st["Package"])
        return hits

    for st in chosen:
        nv = f"{st['Package']} {st['Version']}"
        for field in ("Pre-Depends", "Depends"):
            for clause in _deb_atoms(st.get(field, "")):
                if not any(matches(n, op, v) for n, op, v in clause):
                    problems.append(f"{nv} {field}: {st[field]!r} clause {clause} not satisfied")
        for field in ("Conflicts", "Breaks"):
            for clause in _deb_atoms(st.get(field, "")):
                for n, op, v in clause:
                    hits = matches(n, op, v, exclude=st)
                    if hits:
                        problems.append(f"{nv} {field} {n} {op or ''} {v or ''}: present: {hits}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("plan", type=Path)
    ap.add_argument(
        "--debian",
        metavar="GLOB",
        nargs="?",
        const="/var/lib/apt/lists/*_Packages*",
        help="also check against the original Debian relations in these apt lists",
    )
    args = ap.parse_args(argv)
    index = json.loads(args.index.read_bytes())["packages"]
    plan = json.loads(args.plan.read_bytes())["plan"]
    packages = final_set(index, [], plan)
    problems = check_mix(packages)
    if args.debian:
        sys.path.insert(0, str(Path(__file__).parent))
        problems += check_debian(packages, args.debian)
    for p in problems:
        print(p)
    print(f"{len(packages)} packages checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
