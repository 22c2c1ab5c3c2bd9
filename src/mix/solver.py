"""Dependency resolution for mix: the repository and installed set mapped onto libsolv.

mix hands libsolv (the SAT solver behind zypper, dnf and mamba, through its
``solv`` Python bindings) one pool with RPM version semantics, one libsolv
repository per mix repository (with its priority), the installed packages as
the "system" repository, and the user's explicit packages (the "world") as
user-installed marks. A request becomes libsolv jobs; the answer becomes a
:class:`Plan` in transaction order, or a :class:`SolverError` whose text
explains every problem and the ways out libsolv proposes, in mix's words.

How mix's metadata maps onto libsolv is documented in ``docs/solver.md``;
the version ordering (exactly libsolv's) in ``docs/versions.md``.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import solv

from mix.errors import ResolveError
from mix.version import (
    Dependency,
    InvalidDependency,
    InvalidVersion,
    compare,
    parse_dependency,
    parse_version,
)

__all__ = [
    "CACHE_FORMAT",
    "IndexEntryError",
    "Plan",
    "Problem",
    "Request",
    "SearchIndex",
    "Solver",
    "SolverError",
    "cache_is_fresh",
    "search_index_path",
]

Entry = dict[str, Any]

# Bumped whenever what the .solv cache stores changes; older caches are rebuilt.
CACHE_FORMAT = "mix-solv-6"

_FLAGS = {
    "=": solv.REL_EQ,
    "!=": solv.REL_LT | solv.REL_GT,
    "<": solv.REL_LT,
    "<=": solv.REL_LT | solv.REL_EQ,
    ">": solv.REL_GT,
    ">=": solv.REL_GT | solv.REL_EQ,
}

# In the cache, entry fields live in libsolv's own attributes, so that loading
# stays as small as the dependency data: descriptions and checksums are stored
# "vertically" and paged in only when read. Fields mix does not know travel as
# JSON under "mix:extra"; "mix:inrepo" marks an entry whose "repo" field was
# the repository's own name.
_STR_ATTRS = {
    "description": solv.SOLVABLE_DESCRIPTION,
    "license": solv.SOLVABLE_LICENSE,
    "url": solv.SOLVABLE_URL,
    "filename": solv.SOLVABLE_MEDIAFILE,
}
_NUM_ATTRS = {
    "size": solv.SOLVABLE_DOWNLOADSIZE,
    "installed_size": solv.SOLVABLE_INSTALLSIZE,
    "build_date": solv.SOLVABLE_BUILDTIME,
}
_DEP_ATTRS = {
    "dependencies": solv.SOLVABLE_REQUIRES,
    "provides": solv.SOLVABLE_PROVIDES,
    "conflicts": solv.SOLVABLE_CONFLICTS,
    "replaces": solv.SOLVABLE_OBSOLETES,
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY_EXTRA = "mix:extra"
_ABSENT = (1 << 64) - 1  # lookup_num's "not found"; stored numbers stay below 1 << 63
_KEY_INREPO = "mix:inrepo"
_KEY_FILENAME = "mix:stdfilename"
_KEY_FORMAT = "mix:cacheformat"
_KEY_COUNT = "mix:count"
_KEY_FAVORED = "mix:favored"


class SolverError(ResolveError):
    """No plan satisfies the request; ``str()`` explains why and what could be done.

    ``problems`` holds each problem separately for callers that want to format
    them (``--json``).
    """

    def __init__(self, message: str, problems: Sequence[Problem] = (), hint: str = "") -> None:
        super().__init__(message, hint)
        self.problems = list(problems)


class IndexEntryError(ValueError):
    """A repository or installed-database entry that mix cannot hand to the solver."""


@dataclass(frozen=True)
class Problem:
    """One reason why a request cannot be satisfied, with libsolv's ways out."""

    causes: list[str]
    solutions: list[str]
    chain: list[str] = field(default_factory=list)

    def explain(self, number: int) -> str:
        lines = [f"problem {number}: {self.causes[0]}"]
        lines += [f"  and {cause}" for cause in self.causes[1:]]
        if self.chain:
            lines.append("  required by: " + " <- ".join(self.chain))
        for i, solution in enumerate(self.solutions, 1):
            lines.append(f"  way out {i}: {solution}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Request:
    """What the user asked for. Install specs: ``name``, ``name>=1.0``, ``name=1.2-r1``."""

    install: Sequence[str] = ()
    remove: Sequence[str] = ()
    upgrade: Sequence[str] = ()
    upgrade_all: bool = False
    remove_dependents: bool = False
    drop_orphans: bool = True


@dataclass
class Plan:
    """What to do, in an order that keeps the system consistent at every step.

    ``install``: new packages, dependencies before their dependents.
    ``upgrade``: (installed entry, new entry) pairs, also dependencies first.
    ``remove``: installed entries, dependents before what they depend on.
    ``reasons``: for every package installed, upgraded or newly named by the
    user, whether it is "explicit" (in the world) or a "dependency".
    ``steps``: the whole transaction in order, as ("install", None, new),
    ("upgrade", old, new) or ("remove", old, None).
    """

    install: list[Entry] = field(default_factory=list)
    remove: list[Entry] = field(default_factory=list)
    upgrade: list[tuple[Entry, Entry]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, Entry | None, Entry | None]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.install or self.remove or self.upgrade)


def _write_solv(repo: solv.Repo, path: Path) -> None:
    """Write ``repo`` as a .solv file atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # only when writing: keeps `mix search` imports small

    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        f = solv.xfopen(tmp, "w")
        if f is None:
            raise OSError(f"cannot open {tmp} for writing")
        repo.write(f)
        f.close()
        os.chmod(tmp, 0o644)  # readers (mix search as a user) need it, like the index
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            description = entry(s).get("description")
            if description:
                data.set_str(t.id, solv.SOLVABLE_SUMMARY, str(description))
        data.set_str(solv.SOLVID_META, pool.str2id(_KEY_FORMAT), CACHE_FORMAT)
        data.internalize()
        repo.internalize()
        _write_solv(repo, path)

    @classmethod
    def load(cls, cache: Path, index: Path | None = None) -> SearchIndex | None:
        """The search index beside ``cache``; None if missing, stale or of another format."""
        path = search_index_path(cache)
        if not cache_is_fresh(path, index):
            return None
        pool = solv.Pool()
        repo = pool.add_repo("search")
        f = solv.xfopen(str(path))
        if f is None:
            return None
        ok = repo.add_solv(f)
        f.close()
        if not ok or repo.meta.lookup_str(pool.str2id(_KEY_FORMAT)) != CACHE_FORMAT:
            return None
        return cls(pool)

    def search(self, term: str) -> list[Entry]:
        """Packages whose name or description contains ``term`` (case-insensitive), by name."""
        flags = solv.Dataiterator.SEARCH_SUBSTRING | solv.Dataiterator.SEARCH_NOCASE
        found = {
            d.solvid
            for key in (solv.SOLVABLE_NAME, solv.SOLVABLE_SUMMARY)
            for d in self.pool.Dataiterator(key, term, flags)
        }
        hits = [self.pool.id2solvable(sid) for sid in sorted(found)]
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


def cache_is_fresh(cache: Path, index: Path | None) -> bool:
    """Whether ``cache`` exists and is at least as new as the ``index`` it was made from."""
    try:
        cache_mtime = cache.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    if index is None:
        return True
    try:
        return cache_mtime >= index.stat().st_mtime_ns
    except FileNotFoundError:
        return True


def _pkg(s: solv.XSolvable) -> str:
    """A package as people read it: name-version, marked when it is the installed one."""
    return f"{s.name}-{s.evr}" + (" (installed)" if s.isinstalled() else "")


def _default_filename(entry: Entry) -> str:
    """The package file name ``mix repo index`` gives: NAME-VERSION.ARCH.mixpkg."""
    return f"{entry['name']}-{entry['version']}.{entry.get('arch') or 'noarch'}.mixpkg"


def _dep_text(pool: solv.Pool, dep: Any) -> str:
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


class _Builder:
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


class Solver:
    """Resolve mix requests against repositories and the installed set with libsolv."""

    def __init__(self, arch: str = "x86_64") -> None:
        self.arch = arch
        self.pool = solv.Pool()
        # Debian's build of libsolv defaults to Debian semantics: always ask for RPM's.
        self.pool.setdisttype(solv.Pool.DISTTYPE_RPM)
        self.pool.setarch(arch)
        self._builder = _Builder(self.pool)
        self._key_extra = self.pool.str2id(_KEY_EXTRA)
        self._key_inrepo = self.pool.str2id(_KEY_INREPO)
        self._key_inrepo_filename = self.pool.str2id(_KEY_FILENAME)
        # solvable id -> entry, filled while building or lazily from a cache.
        self._entries: dict[int, Entry] = {}
        self._reasons: dict[str, str] = {}
        self._dep_texts: dict[int, str] = {}
        self._installed: solv.Repo | None = None
        self._whatprovides_ready = False
        # "a | b" requirements per repository, and what they make mix prefer (see _favor_for).
        self._groups: dict[str, set[tuple[str, ...]]] = {}
        # Per repository: packages providing names other than their own.
        self._provided: dict[str, list[tuple[int, set[str]]]] = {}
        # Per repository: (favoured, favoured more, disfavoured) solvable ids.
        self._favor: dict[str, tuple[list[int], list[int], list[int]]] = {}

    # ---- loading --------------------------------------------------------

    def add_repo(
        self,
        name: str,
        entries: Sequence[Entry] | Callable[[], Sequence[Entry]] | None = None,
        priority: int = 0,
        cache: Path | None = None,
        index: Path | None = None,
    ) -> None:
        """Add one repository: its index's ``packages`` entries, or its ``.solv`` cache.

        With ``cache``: if ``entries`` is a list, the repository is built from it
        and the cache (re)written; if ``entries`` is None or a callable, the
        cache is loaded when it is at least as new as ``index`` (so the index
        need not even be parsed), and otherwise ``entries()`` is built and the
        cache written. Higher ``priority`` wins over newer versions elsewhere.
        """
        repo = self.pool.add_repo(name)
        repo.priority = priority
        self._whatprovides_ready = False
        lazy = not isinstance(entries, Sequence)
        if lazy and cache is not None and self._load_cache(repo, cache, index):
            return
        if entries is None:
            raise IndexEntryError(
                f"repository {name}: no package list and no usable cache at {cache}; "
                "run 'mix update'"
            )
        loaded = entries() if callable(entries) else entries
        self._build(repo, loaded, f"repository {name}", keep_data=cache is not None)
        if cache is not None:
            self._write_cache(repo, cache, len(loaded))

    def set_installed(self, entries: Iterable[Entry]) -> None:
        """The installed packages; each entry's "reason" is "explicit" or "dependency"."""
        if self._installed is not None:
            raise RuntimeError("set_installed() called twice")
        repo = self.pool.add_repo("@installed")
        entries = list(entries)
        self._build(repo, entries, "installed database", keep_data=False)
        for entry in entries:
            reason = entry.get("reason", "explicit")
            if reason not in ("explicit", "dependency"):
                raise IndexEntryError(
                    f"installed database: package {entry['name']} has reason {reason!r} "
                    "(expected 'explicit' or 'dependency')"
                )
            self._reasons[entry["name"]] = reason
        self.pool.installed = repo
        self._installed = repo
        self._whatprovides_ready = False

    def _build(
        self, repo: solv.Repo, entries: Sequence[Entry], where: str, keep_data: bool
    ) -> None:
        data = repo.add_repodata()
        groups = self._groups.setdefault(repo.name, set())
        provided = self._provided.setdefault(repo.name, [])
        for entry in entries:
            s = self._builder.add(repo, data, entry, where)
            self._entries[s.id] = entry
            if entry.get("provides"):
                names = {self._builder.parsed(text).name for text in entry["provides"]}
                names.discard(entry["name"])
                if names:
                    provided.append((s.id, names))
            for text in entry.get("dependencies") or ():
                if "|" in text:
                    groups.add(tuple(c.name for c in self._builder.parsed(text).choices()))
            if keep_data:
                self._store(data, s.id, entry, repo.name)
        data.internalize()
        repo.internalize()

    def _store(self, data: solv.Repodata, sid: int, entry: Entry, repo_name: str) -> None:
        """Keep an entry's fields in libsolv attributes for the cache (see _STR_ATTRS)."""
        extra: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("name", "version", "arch") or key in _DEP_ATTRS:
                continue
            if key == "filename" and value == _default_filename(entry):
                # Rebuilt on load: saves a string per package in the cache.
                data.set_void(sid, self._key_inrepo_filename)
                continue
            if key in _STR_ATTRS and isinstance(value, str):
                if value:  # an absent string comes back as "" (as mix.index fills it in)
                    data.set_str(sid, _STR_ATTRS[key], value)
            elif (
                key in _NUM_ATTRS
                and isinstance(value, int)
                and not isinstance(value, bool)
                and 0 <= value < 1 << 63
            ):
                data.set_num(sid, _NUM_ATTRS[key], value)
            elif key == "sha256" and isinstance(value, str) and _SHA256.fullmatch(value):
                data.set_checksum(
                    sid, solv.SOLVABLE_CHECKSUM, solv.Chksum(solv.REPOKEY_TYPE_SHA256, value)
                )
            elif key == "repo" and value == repo_name:
                data.set_void(sid, self._key_inrepo)
            else:
                extra[key] = value
        if extra:
            import json

            data.set_str(sid, self._key_extra, json.dumps(extra, separators=(",", ":")))

    def _restore(self, s: solv.XSolvable) -> Entry:
        """The entry a cached solvable was built from (dependency strings normalised)."""
        pool = self.pool
        entry: Entry = {"name": s.name, "version": s.evr, "arch": s.arch}
        itself = pool.rel2id(s.nameid, s.evrid, solv.REL_EQ)
        for key, attr in _DEP_ATTRS.items():
            # Skip the implicit "name=version" that every package provides.
            deps = s.lookup_deparray(attr)
            entry[key] = [self._dep_str(d.id) for d in deps if key != "provides" or d.id != itself]
        for key, attr in _STR_ATTRS.items():
            text = s.lookup_str(attr)
            if text is not None or key != "filename":
                entry[key] = text or ""
        if "filename" not in entry and s.lookup_void(self._key_inrepo_filename):
            entry["filename"] = _default_filename(entry)
        for key, attr in _NUM_ATTRS.items():
            number = s.lookup_num(attr, _ABSENT)
            if number != _ABSENT:
                entry[key] = number
        checksum = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
        if checksum is not None:
            entry["sha256"] = checksum.hex()
        if s.lookup_void(self._key_inrepo):
            entry["repo"] = s.repo.name
        extra = s.lookup_str(self._key_extra)
        if extra:
            import json

            entry.update(json.loads(extra))
        return entry

    def _write_cache(self, repo: solv.Repo, cache: Path, count: int) -> None:
        meta = repo.add_repodata()
        meta.set_str(solv.SOLVID_META, self.pool.str2id(_KEY_FORMAT), CACHE_FORMAT)
        meta.set_num(solv.SOLVID_META, self.pool.str2id(_KEY_COUNT), count)
        self.pool.createwhatprovides()
        first = self._favor_for(repo)
        base = first[0] if first else 0
        levels = self._favor[repo.name]
        meta.set_str(
            solv.SOLVID_META,
            self.pool.str2id(_KEY_FAVORED),
            "\n".join(" ".join(str(sid - base) for sid in level) for level in levels),
        )
        meta.internalize()
        # The search index first: whenever the main cache is fresh, so is it.
        SearchIndex.write(search_index_path(cache), repo.solvables, self.entry)
        _write_solv(repo, cache)

    def _load_cache(self, repo: solv.Repo, cache: Path, index: Path | None) -> bool:
        if not cache_is_fresh(cache, index):
            return False
        f = solv.xfopen(str(cache))
        if f is None:
            return False
        ok = repo.add_solv(f)
        f.close()
        if not ok or repo.meta.lookup_str(self.pool.str2id(_KEY_FORMAT)) != CACHE_FORMAT:
            repo.empty()
            return False
        favored = repo.meta.lookup_str(self.pool.str2id(_KEY_FAVORED)) or "\n\n"
        base = next(iter(repo.solvables)).id if repo.nsolvables else 0
        low, high, standins = (
            [base + int(offset) for offset in line.split()] for line in favored.split("\n", 2)
        )
        self._favor[repo.name] = (low, high, standins)
        return True

    # ---- entries --------------------------------------------------------

    def _dep_str(self, dep_id: int) -> str:
        text = self._dep_texts.get(dep_id)
        if text is None:
            text = self._dep_texts[dep_id] = _dep_text(self.pool, dep_id)
        return text

    def entry(self, s: solv.XSolvable) -> Entry:
        """The mix entry of a solvable (rebuilt from the cache's attributes if needed)."""
        entry = self._entries.get(s.id)
        if entry is None:
            entry = self._entries[s.id] = self._restore(s)
        return entry

    def _ready(self) -> None:
        if not self._whatprovides_ready:
            self.pool.addfileprovides()
            self.pool.createwhatprovides()
            self._whatprovides_ready = True
            for repo in self.pool.repos_iter():
                if repo.name not in self._favor:
                    self._favor_for(repo)

    def _favor_for(self, repo: solv.Repo) -> list[int]:
        """Work out which of ``repo``'s packages "a | b" requirements make mix prefer.

        For each requirement, the first alternative that anything provides wins:
        its providers are preferred (low level) and a package carrying exactly
        that name more so (high level). Packages that provide the name of
        another real package ("stand-ins", like a codec build that provides
        the plain codec library's name) are disfavoured, so that a requirement
        on that name gets the real package, as apt would choose. libsolv takes
        these as SOLVER_FAVOR / SOLVER_DISFAVOR jobs: global hints, not per
        requirement. Needs whatprovides. Returns the repository's solvable ids.
        """
        ids = [s.id for s in repo.solvables]
        mine = set(ids)
        low: set[int] = set()
        high: set[int] = set()
        pool = self.pool
        for group in self._groups.get(repo.name, ()):
            for name in group:
                name_id = pool.str2id(name)
                providers = [p for p in pool.whatprovides(name_id) if p.id in mine]
                if providers:
                    low.update(p.id for p in providers)
                    high.update(p.id for p in providers if p.nameid == name_id)
                    break
        standins = set()
        for sid, names in self._provided.get(repo.name, ()):
            for name in names:
                name_id = pool.str2id(name)
                if any(p.nameid == name_id for p in pool.whatprovides(name_id)):
                    standins.add(sid)
                    break
        self._favor[repo.name] = (sorted(low), sorted(high), sorted(standins))
        return ids

    def search(self, term: str, limit: int | None = None) -> list[Entry]:
        """Available packages whose name or description contains ``term`` (case-insensitive)."""
        flags = solv.Dataiterator.SEARCH_SUBSTRING | solv.Dataiterator.SEARCH_NOCASE
        found: set[int] = set()
        for key in (solv.SOLVABLE_NAME, solv.SOLVABLE_DESCRIPTION):
            for d in self.pool.Dataiterator(key, term, flags):
                found.add(d.solvid)
        result: list[solv.XSolvable] = []
        for sid in sorted(found):
            s = self.pool.id2solvable(sid)
            if s.repo != self._installed:
                result.append(s)
        result.sort(key=lambda s: (s.name, s.id))
        if limit is not None:
            result = result[:limit]
        return [self.entry(s) for s in result]

    # ---- solving --------------------------------------------------------

    def solve(self, request: Request) -> Plan:
        """Resolve ``request``; raise SolverError explaining why when it cannot be done."""
        self._ready()
        pool = self.pool
        jobs: list[solv.Job] = []
        requested: list[tuple[str, list[solv.XSolvable]]] = []
        # Dependencies that the jobs' packages no longer need go with them.
        cleandeps = solv.Job.SOLVER_CLEANDEPS if request.drop_orphans else 0

        for spec in request.install:
            job, candidates = self._install_job(spec)
            job.how |= cleandeps
            jobs.append(job)
            requested.append((spec, candidates))
        for name in request.remove:
            jobs.append(self._remove_job(name, cleandeps))
        for name in request.upgrade:
            jobs.append(self._upgrade_job(name, cleandeps))
        if request.upgrade_all:
            jobs.append(
                pool.Job(solv.Job.SOLVER_UPDATE | solv.Job.SOLVER_SOLVABLE_ALL | cleandeps, 0)
            )
        # The world: explicit packages stay; the rest may go once unneeded.
        for s in self._installed.solvables if self._installed is not None else ():
            if self._reasons.get(s.name) == "explicit" and s.name not in request.remove:
                jobs.append(
                    pool.Job(
                        solv.Job.SOLVER_USERINSTALLED | solv.Job.SOLVER_SOLVABLE_NAME, s.nameid
                    )
                )
        # Later favor jobs weigh more: providers first, exact names last.
        for level, how in (
            (2, solv.Job.SOLVER_DISFAVOR),
            (0, solv.Job.SOLVER_FAVOR),
            (1, solv.Job.SOLVER_FAVOR),
        ):
            chosen = [sid for levels in self._favor.values() for sid in levels[level]]
            if chosen:
                jobs.append(
                    pool.Job(how | solv.Job.SOLVER_SOLVABLE_ONE_OF, pool.towhatprovides(chosen))
                )

        allow_uninstall = bool(request.remove and request.remove_dependents)
        solver = self._new_solver(allow_uninstall)
        problems = solver.solve(jobs)
        # Where libsolv met an "a | b" requirement with a later alternative although
        # the first one could be had, favour the first one for that choice and solve
        # again (a few rounds at most): the global hints above cannot tell which
        # requirement a shared alternative came from.
        for _ in range(3):
            if problems:
                break
            preferred = self._first_alternatives_missed(solver)
            if not preferred:
                break
            jobs.append(
                pool.Job(
                    solv.Job.SOLVER_FAVOR | solv.Job.SOLVER_SOLVABLE_ONE_OF,
                    pool.towhatprovides(preferred),
                )
            )
            retry = self._new_solver(allow_uninstall)
            if retry.solve(jobs):
                jobs.pop()
                break
            solver = retry
        if problems and request.remove and not request.remove_dependents:
            self._refuse_breaking_dependents(jobs, request)
        if problems:
            explained = [self._explain(p, requested, jobs) for p in problems]
            raise SolverError(
                "cannot satisfy the request:\n"
                + "\n".join(p.explain(i) for i, p in enumerate(explained, 1)),
                explained,
                hint="choose one of the ways out above, or run 'mix update' if the "
                "repositories may be out of date",
            )
        return self._plan(solver.transaction(), requested)

    def _new_solver(self, allow_uninstall: bool) -> solv.Solver:
        solver = self.pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        if allow_uninstall:
            # Installed packages whose requirements the removal breaks may go too.
            solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_UNINSTALL, 1)
        return solver

    def _first_alternatives_missed(self, solver: solv.Solver) -> list[int]:
        """Providers of first alternatives that libsolv passed over for a later one."""
        preferred: list[int] = []
        for alt in solver.alternatives():
            if alt.type != solv.Alternative.SOLVER_ALTERNATIVE_TYPE_RULE or alt.chosen is None:
                continue
            dep = alt.rule.info().dep
            if dep is None:
                continue
            text = _dep_text(self.pool, dep)
            if " | " not in text:
                continue
            choices = {c.id for c in alt.choices()}
            for atom in text.split(" | "):
                providers = [
                    p.id for p in self.pool.whatprovides(self._builder.dep(atom)) if p.id in choices
                ]
                if providers:
                    if alt.chosen.id not in providers:
                        preferred.extend(providers)
                    break
        return preferred

    def _install_job(self, spec: str) -> tuple[solv.Job, list[solv.XSolvable]]:
        pool = self.pool
        try:
            dep = parse_dependency(spec)
        except InvalidDependency as e:
            raise SolverError(f"cannot install {spec!r}: {e}") from None
        if dep.alternatives:
            raise SolverError(
                f"cannot install {spec!r}: name one package per argument, not alternatives"
            )
        dep_id = self._builder.dep(spec)
        name_id = pool.str2id(dep.name)
        by_name = [s for s in pool.whatprovides(name_id) if s.nameid == name_id]
        if by_name:
            how = solv.Job.SOLVER_SOLVABLE_NAME
            candidates = [s for s in pool.whatprovides(dep_id) if s.nameid == name_id]
        else:
            how = solv.Job.SOLVER_SOLVABLE_PROVIDES
            candidates = list(pool.whatprovides(dep_id))
        if not by_name and not candidates and not list(pool.whatprovides(name_id)):
            foreign = self._foreign_arches(dep.name)
            if foreign:
                raise SolverError(
                    f"{dep.name} is not available for {self.arch} (only for {', '.join(foreign)})",
                    hint="install a package built for this machine, or one marked noarch",
                )
            raise SolverError(self._unknown(dep.name), hint="check the name with 'mix search'")
        if not candidates:
            versions = sorted(
                {s.evr for s in by_name} or {s.evr for s in pool.whatprovides(name_id)},
                key=cmp_to_key(compare),
            )
            raise SolverError(
                f"no version of {dep.name} matches {spec!r}; available: {', '.join(versions)}",
                hint="ask for one of the available versions, or run 'mix update'",
            )
        installable = [s for s in candidates if s.installable() or s.isinstalled()]
        if not installable:
            arches = sorted({s.arch for s in candidates})
            raise SolverError(
                f"{dep.name} is not available for {self.arch} (only for {', '.join(arches)})",
                hint="install a package built for this machine, or one marked noarch",
            )
        return pool.Job(solv.Job.SOLVER_INSTALL | how, dep_id), candidates

    def _foreign_arches(self, name: str) -> list[str]:
        """Architectures of packages called ``name`` that cannot run here."""
        arches = set()
        for d in self.pool.Dataiterator(solv.SOLVABLE_NAME, name, solv.Dataiterator.SEARCH_STRING):
            arches.add(self.pool.id2solvable(d.solvid).arch)
        return sorted(arches)

    def _unknown(self, name: str) -> str:
        flags = solv.Dataiterator.SEARCH_SUBSTRING | solv.Dataiterator.SEARCH_NOCASE
        similar = sorted(
            {str(d.str) for d in self.pool.Dataiterator(solv.SOLVABLE_NAME, name, flags)}
        )
        message = f"no package named {name!r} in the repositories"
        if similar:
            message += "; similar names: " + ", ".join(similar[:8])
        return message

    def _installed_by_name(self, name: str) -> list[solv.XSolvable]:
        if self._installed is None:
            return []
        return [s for s in self._installed.solvables if s.name == name]

    def _remove_job(self, name: str, cleandeps: int) -> solv.Job:
        if not self._installed_by_name(name):
            raise SolverError(
                f"cannot remove {name}: it is not installed", hint="see 'mix list --installed'"
            )
        how = solv.Job.SOLVER_ERASE | solv.Job.SOLVER_SOLVABLE_NAME | cleandeps
        return self.pool.Job(how, self.pool.str2id(name))

    def _upgrade_job(self, name: str, cleandeps: int) -> solv.Job:
        if not self._installed_by_name(name):
            raise SolverError(
                f"cannot upgrade {name}: it is not installed", hint=f"use 'mix install {name}'"
            )
        how = solv.Job.SOLVER_UPDATE | solv.Job.SOLVER_SOLVABLE_NAME | cleandeps
        return self.pool.Job(how, self.pool.str2id(name))

    def _plan(
        self, trans: solv.Transaction, requested: list[tuple[str, list[solv.XSolvable]]]
    ) -> Plan:
        plan = Plan()
        # The packages that answer the user's specs are explicit (a spec may
        # name a virtual package; then the chosen provider becomes explicit).
        new_ids = {s.id for s in trans.newsolvables()} if not trans.isempty() else set()
        explicit: set[str] = set()
        for _, candidates in requested:
            chosen = [s for s in candidates if s.id in new_ids] or [
                s for s in candidates if s.isinstalled()
            ]
            explicit.update(s.name for s in chosen[:1])

        if not trans.isempty():
            trans.order()
        replaced: set[int] = set()
        for s in trans.steps() if not trans.isempty() else ():
            if s.isinstalled():
                continue
            old = trans.othersolvable(s)
            if old is not None and old.isinstalled() and old.name == s.name:
                replaced.add(old.id)
        for s in trans.steps() if not trans.isempty() else ():
            if s.isinstalled():
                if s.id in replaced:
                    continue
                old_entry = self.entry(s)
                plan.remove.append(old_entry)
                plan.steps.append(("remove", old_entry, None))
                continue
            new = self.entry(s)
            old = trans.othersolvable(s)
            if old is not None and old.isinstalled() and old.name == s.name:
                old_entry = self.entry(old)
                plan.upgrade.append((old_entry, new))
                plan.steps.append(("upgrade", old_entry, new))
                plan.reasons[s.name] = (
                    "explicit" if s.name in explicit else self._reasons.get(s.name, "dependency")
                )
            else:
                plan.install.append(new)
                plan.steps.append(("install", None, new))
                plan.reasons[s.name] = "explicit" if s.name in explicit else "dependency"
        # Naming an installed dependency makes it explicit even when nothing changes.
        for name in explicit:
            if self._reasons.get(name) == "dependency":
                plan.reasons[name] = "explicit"
        return plan

    def _refuse_breaking_dependents(self, jobs: list[solv.Job], request: Request) -> None:
        """Name the installed packages a removal would break, if that is the only problem."""
        solver = self.pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_UNINSTALL, 1)
        if solver.solve(jobs):
            return
        asked = set(request.remove)
        trans = solver.transaction()
        gone = {s.name for s in trans.steps() if s.isinstalled()} if not trans.isempty() else set()
        installed = self._installed.solvables if self._installed is not None else []
        gone_pkgs = [s for s in installed if s.name in gone and s.name not in asked]
        # Dependents: gone packages with a requirement that only gone packages
        # met, at least one of them removed on purpose or itself a dependent.
        # Orphans that merely lost their last user are not dependents.
        culprits = set(asked)
        needs: dict[str, set[str]] = {}
        changed = True
        while changed:
            changed = False
            for s in gone_pkgs:
                for dep in s.lookup_deparray(solv.SOLVABLE_REQUIRES):
                    providers = [p for p in self.pool.whatprovides(dep.id) if p.isinstalled()]
                    if (
                        providers
                        and all(p.name in gone for p in providers)
                        and any(p.name in culprits for p in providers)
                    ):
                        text = _dep_text(self.pool, dep)
                        if text not in needs.setdefault(s.name, set()):
                            needs[s.name].add(text)
                            changed = True
                        culprits.add(s.name)
        lines = [
            f"  {_pkg(s)} (requires {', '.join(sorted(needs[s.name]))})"
            for s in gone_pkgs
            if s.name in needs
        ]
        if not lines:
            return
        names = ", ".join(sorted(asked))
        raise SolverError(
            f"removing {names} would break installed packages that depend on it:\n"
            + "\n".join(lines),
            hint=f"remove them as well (mix remove --cascade {names}), or keep {names}",
        )

    # ---- explanations ---------------------------------------------------

    def _explain(
        self,
        problem: solv.Problem,
        requested: list[tuple[str, list[solv.XSolvable]]],
        jobs: list[solv.Job],
    ) -> Problem:
        causes: list[str] = []
        culprits: list[solv.XSolvable] = []
        for rule in problem.findallproblemrules():
            for info in rule.allinfos():
                text = self._rule_text(info)
                if text and text not in causes:
                    causes.append(text)
                if info.solvable is not None:
                    culprits.append(info.solvable)
        if not causes:
            causes.append(str(problem))
        solutions = []
        for solution in problem.solutions():
            parts = [self._element_text(el, jobs) for el in solution.elements(True)]
            parts = [p for p in parts if p]
            if parts:
                solutions.append("; ".join(parts))
        chain = self._chain(requested, culprits)
        return Problem(causes, solutions, chain)

    def _rule_text(self, info: Any) -> str:
        pool = self.pool
        s, other, dep = info.solvable, info.othersolvable, info.dep
        dep_text = _dep_text(pool, dep) if dep is not None else ""
        t = info.type
        R = solv.Solver
        if t == R.SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP:
            return f"{_pkg(s)} requires {dep_text}, but no package in the repositories provides it"
        if t == R.SOLVER_RULE_PKG_REQUIRES:
            providers = [_pkg(p) for p in pool.whatprovides(dep.id)][:6]
            return (
                f"{_pkg(s)} requires {dep_text}, but none of its providers "
                f"({', '.join(providers)}) can be installed"
            )
        if t == R.SOLVER_RULE_PKG_CONFLICTS:
            return f"{_pkg(s)} conflicts with {dep_text}, which {_pkg(other)} provides"
        if t == R.SOLVER_RULE_PKG_SELF_CONFLICT:
            return f"{_pkg(s)} conflicts with {dep_text}, which it provides itself"
        if t == R.SOLVER_RULE_PKG_SAME_NAME:
            return f"only one version of {s.name} can be installed: {_pkg(s)} or {_pkg(other)}"
        if t in (
            R.SOLVER_RULE_PKG_OBSOLETES,
            R.SOLVER_RULE_PKG_INSTALLED_OBSOLETES,
            R.SOLVER_RULE_PKG_IMPLICIT_OBSOLETES,
        ):
            return f"{_pkg(s)} replaces {dep_text}, which {_pkg(other)} provides"
        if t == R.SOLVER_RULE_PKG_NOT_INSTALLABLE:
            if not pool.isknownarch(s.archid):
                return f"{_pkg(s)} is built for {s.arch}, not for {self.arch}"
            return f"{_pkg(s)} cannot be installed"
        if t == R.SOLVER_RULE_JOB_NOTHING_PROVIDES_DEP:
            return f"you asked for {dep_text}, but no package in the repositories provides it"
        if t == R.SOLVER_RULE_JOB_UNKNOWN_PACKAGE:
            return f"you asked for {dep_text}, but there is no such package"
        if t == R.SOLVER_RULE_JOB_PROVIDED_BY_SYSTEM:
            return f"{dep_text} is provided by the system itself"
        if t == R.SOLVER_RULE_JOB:
            return ""
        if t == R.SOLVER_RULE_UPDATE or t == R.SOLVER_RULE_FEATURE:
            return f"installed {_pkg(s)} is kept (mix does not upgrade or remove it on its own)"
        if t == R.SOLVER_RULE_INFARCH:
            return f"{_pkg(s)} has an architecture inferior to an alternative"
        if t == R.SOLVER_RULE_BEST:
            return f"the newest version of {s.name} cannot be installed"
        return str(info.problemstr())

    def _element_text(self, el: Any, jobs: list[solv.Job]) -> str:
        S = solv.Solver
        t = el.type
        if t == S.SOLVER_SOLUTION_POOLJOB:
            return ""
        if t == S.SOLVER_SOLUTION_JOB:
            job = jobs[el.jobidx]
            how = job.how & solv.Job.SOLVER_JOBMASK
            target = _dep_text(self.pool, job.what) if job.what else "everything"
            if how == solv.Job.SOLVER_INSTALL:
                return f"do not install {target}"
            if how == solv.Job.SOLVER_ERASE:
                return f"do not remove {target}"
            if how == solv.Job.SOLVER_UPDATE:
                return f"do not upgrade {target}"
            return ""
        if t == S.SOLVER_SOLUTION_ERASE:
            return f"remove {_pkg(el.solvable)}"
        if t == S.SOLVER_SOLUTION_INFARCH:
            return f"install {_pkg(el.solvable)} despite its inferior architecture"
        if t == S.SOLVER_SOLUTION_BEST:
            return f"accept an older version of {el.solvable.name} than {_pkg(el.solvable)}"
        if t in (
            S.SOLVER_SOLUTION_REPLACE,
            S.SOLVER_SOLUTION_REPLACE_DOWNGRADE,
            S.SOLVER_SOLUTION_REPLACE_ARCHCHANGE,
            S.SOLVER_SOLUTION_REPLACE_NAMECHANGE,
            S.SOLVER_SOLUTION_REPLACE_VENDORCHANGE,
        ):
            return f"replace {_pkg(el.solvable)} with {_pkg(el.replacement)}"
        if el.solvable is not None and el.solvable.isinstalled():
            return f"remove {_pkg(el.solvable)}"
        if el.solvable is not None:
            return f"ignore some dependencies of {_pkg(el.solvable)} (breaks it; not recommended)"
        return str(el)

    def _chain(
        self, requested: list[tuple[str, list[solv.XSolvable]]], culprits: list[solv.XSolvable]
    ) -> list[str]:
        """The longest of the shortest requirement paths from a requested package to a culprit.

        The deepest culprit is usually the one that has to change (the package
        whose dependency nothing provides); the path shows how the request
        reached it.
        """
        start: dict[int, str] = {}
        for spec, candidates in requested:
            for s in candidates:
                start.setdefault(s.id, spec)
        targets = {s.id for s in culprits} - set(start)
        if not targets:
            return []
        parent: dict[int, int | None] = {sid: None for sid in start}
        queue = deque(start)
        budget = 200_000
        while queue and budget > 0 and not targets <= parent.keys():
            sid = queue.popleft()
            budget -= 1
            for dep in self.pool.id2solvable(sid).lookup_deparray(solv.SOLVABLE_REQUIRES):
                for p in self.pool.whatprovides(dep.id):
                    if p.id not in parent:
                        parent[p.id] = sid
                        queue.append(p.id)
        best: list[int] = []
        for target in sorted(targets & parent.keys()):
            path = [target]
            while (up := parent[path[-1]]) is not None:
                path.append(up)
            if len(path) > len(best):
                best = path
        if not best:
            return []
        names = [_pkg(self.pool.id2solvable(sid)) for sid in best]
        names[-1] += f" (you asked for {start[best[-1]]})"
        return names
