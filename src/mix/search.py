"""The search index of a repository: names, versions and descriptions for ``mix search``.

``mix update`` writes it beside the solver's ``.solv`` cache (``search_index_path``),
in the same ``CACHE_FORMAT`` and with the same freshness rule (``mix.solvcache``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import solv

from mix.solvcache import cache_is_fresh, mark_format, read_solv, write_solv

if TYPE_CHECKING:  # only for annotations: `mix search` imports no more than it needs
    from mix.solvables import Entry

__all__ = ["SUBSTRING", "SearchIndex", "matching", "search_index_path"]

# How mix matches a search term: anywhere in the text, ignoring case.
SUBSTRING = solv.Dataiterator.SEARCH_SUBSTRING | solv.Dataiterator.SEARCH_NOCASE
# In the search index: the names a package provides besides its own, space-separated.
_PROVIDES_KEY = "mix:provides"


def provided_names(provides: Iterable[object], own: str) -> list[str]:
    """The names in provides entries ("libssl.so.3", "sh = 1.36") other than own."""
    names = {str(p).split()[0].split("=")[0].split("<")[0].split(">")[0] for p in provides}
    names.discard(own)
    return sorted(n for n in names if n)


def matching_provides(names: Iterable[str], term: str) -> bool:
    folded = term.casefold()
    return any(folded in n.casefold() for n in names)


def matching(pool: solv.Pool, keys: Iterable[int], term: str) -> list[solv.XSolvable]:
    """The solvables of ``pool`` with ``term`` in any of the attributes ``keys``, by name."""
    found = {d.solvid for key in keys for d in pool.Dataiterator(key, term, SUBSTRING)}
    hits = [pool.id2solvable(sid) for sid in sorted(found)]
    hits.sort(key=lambda s: (s.name, s.id))
    return hits


def search_index_path(cache: Path) -> Path:
    """Where the search index of a repository cache lives: ``index.solv`` -> ``index.search.solv``."""
    return cache.with_name(f"{cache.stem}.search{cache.suffix or '.solv'}")


class SearchIndex:
    """Names, versions and descriptions of one repository, for ``mix search``.

    ``mix update`` writes it next to the solver cache (``search_index_path``).
    Without dependencies it loads in a third of the time of the full cache,
    which is what keeps ``mix search`` over 60,000 packages fast. Results are
    entries with ``name``, ``version``, ``arch`` and ``description`` only.
    """

    def __init__(self, pool: solv.Pool) -> None:
        self.pool = pool

    @staticmethod
    def write(path: Path, solvables: Iterable[solv.XSolvable], entry: Callable[..., Entry]) -> None:
        pool = solv.Pool()
        repo = pool.add_repo("search")
        data = repo.add_repodata()
        for s in solvables:
            t = repo.add_solvable()
            t.name, t.evr, t.arch = s.name, s.evr, s.arch
            e = entry(s)
            description = e.get("description")
            if description:
                data.set_str(t.id, solv.SOLVABLE_SUMMARY, str(description))
            provided = provided_names(e.get("provides") or (), s.name)
            if provided:
                data.set_str(t.id, pool.str2id(_PROVIDES_KEY), " ".join(provided))
        mark_format(repo, data)
        data.internalize()
        repo.internalize()
        write_solv(repo, path)

    @classmethod
    def load(cls, cache: Path, index: Path | None = None) -> SearchIndex | None:
        """The search index beside ``cache``; None if missing, stale or of another format."""
        path = search_index_path(cache)
        if not cache_is_fresh(path, index):
            return None
        pool = solv.Pool()
        if not read_solv(pool.add_repo("search"), path):
            return None
        return cls(pool)

    def search(self, term: str) -> list[Entry]:
        """Packages whose name, description or a name they provide (a virtual name)
        contains ``term`` (case-insensitive), by name."""
        key = self.pool.str2id(_PROVIDES_KEY)
        hits = matching(self.pool, (solv.SOLVABLE_NAME, solv.SOLVABLE_SUMMARY), term)
        seen = {s.id for s in hits}
        for s in matching(self.pool, (key,), term):
            if s.id not in seen and matching_provides((s.lookup_str(key) or "").split(), term):
                hits.append(s)
        hits.sort(key=lambda s: (s.name, s.id))
        return [
            {
                "name": s.name,
                "version": s.evr,
                "arch": s.arch,
                "description": s.lookup_str(solv.SOLVABLE_SUMMARY) or "",
            }
            for s in hits
        ]
