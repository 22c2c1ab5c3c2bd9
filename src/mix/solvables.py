"""mix's package entries as libsolv solvables (the mapping, both ways).

An entry (a repository index's ``packages`` item, or an installed package) becomes
one solvable: name, version (evr), arch, and its provides, requires, conflicts and
obsoletes as libsolv dependency ids; ``dep_text`` gives a libsolv dependency back in
mix's syntax. ``docs/solver.md`` has the whole mapping.
"""

from __future__ import annotations

from typing import Any

import solv

from mix.version import (
    Dependency,
    InvalidDependency,
    InvalidVersion,
    parse_dependency,
    parse_version,
)

__all__ = ["Builder", "Entry", "IndexEntryError", "dep_text"]

Entry = dict[str, Any]

_FLAGS = {
    "=": solv.REL_EQ,
    "!=": solv.REL_LT | solv.REL_GT,
    "<": solv.REL_LT,
    "<=": solv.REL_LT | solv.REL_EQ,
    ">": solv.REL_GT,
    ">=": solv.REL_GT | solv.REL_EQ,
}


class IndexEntryError(ValueError):
    """A repository or installed-database entry that mix cannot hand to the solver."""


def dep_text(pool: solv.Pool, dep: Any) -> str:
    """A libsolv dependency in mix's syntax: ``(a >= 1 or b <> 2)`` -> ``a>=1 | b!=2``.

    mix names and versions hold no spaces or parentheses, so libsolv's text
    form splits unambiguously.
    """
    dep_id = dep if isinstance(dep, int) else dep.id
    text = str(pool.dep2str(dep_id))
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    atoms = []
    for atom in text.split(" or "):
        parts = atom.split(" ")
        if len(parts) == 3:
            name, op, evr = parts
            atoms.append(f"{name}{'!=' if op == '<>' else op}{evr}")
        else:
            atoms.append(atom)
    return " | ".join(atoms)


class Builder:
    """Turns mix entries into libsolv solvables, memoising dependency ids."""

    def __init__(self, pool: solv.Pool) -> None:
        self.pool = pool
        self._deps: dict[str, int] = {}
        self._parsed: dict[str, Dependency] = {}
        self._evrs: dict[str, int] = {}

    def evr(self, text: str) -> int:
        evr_id = self._evrs.get(text)
        if evr_id is None:
            parse_version(text)
            evr_id = self._evrs[text] = self.pool.str2id(text)
        return evr_id

    def dep(self, text: str) -> int:
        dep_id = self._deps.get(text)
        if dep_id is None:
            dep_id = self._deps[text] = self._dep_id(self.parsed(text))
        return dep_id

    def parsed(self, text: str) -> Dependency:
        dep = self._parsed.get(text)
        if dep is None:
            dep = self._parsed[text] = parse_dependency(text)
        return dep

    def _dep_id(self, dep: Dependency) -> int:
        pool = self.pool
        result = 0
        for choice in reversed(dep.choices()):
            term = pool.str2id(choice.name)
            if choice.op is not None and choice.version is not None:
                term = pool.rel2id(term, self.evr(choice.version), _FLAGS[choice.op])
            result = term if not result else pool.rel2id(term, result, solv.REL_OR)
        return result

    def add(self, repo: solv.Repo, data: solv.Repodata, entry: Entry, where: str) -> solv.XSolvable:
        pool = self.pool
        try:
            name = entry["name"]
            version = entry["version"]
        except (KeyError, TypeError):
            raise IndexEntryError(
                f"{where}: entry without name or version: {entry!r:.200}"
            ) from None
        try:
            s = repo.add_solvable()
            s.nameid = pool.str2id(name)
            s.evrid = self.evr(version)
            s.archid = pool.str2id(entry.get("arch") or "noarch")
            s.add_provides(pool.rel2id(s.nameid, s.evrid, solv.REL_EQ))
            for text in entry.get("provides") or ():
                s.add_provides(self.dep(text))
            for text in entry.get("dependencies") or ():
                s.add_requires(self.dep(text))
            for text in entry.get("conflicts") or ():
                s.add_conflicts(self.dep(text))
            for text in entry.get("replaces") or ():
                s.add_obsoletes(self.dep(text))
        except (InvalidVersion, InvalidDependency) as e:
            raise IndexEntryError(f"{where}: package {name} {version}: {e}") from None
        return s
