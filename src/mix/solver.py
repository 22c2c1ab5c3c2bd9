"""Dependency resolution for mix: the repository and installed set mapped onto libsolv.

mix hands libsolv (the SAT solver behind zypper, dnf and mamba, through its
``solv`` Python bindings) one pool with RPM version semantics, one libsolv
repository per mix repository (with its priority), the installed packages as
the "system" repository, and the user's explicit packages (the "world") as
user-installed marks. A request becomes libsolv jobs; the answer becomes a
:class:`Plan` in transaction order, or a :class:`SolverError` whose text
explains every problem and the ways out libsolv proposes, in mix's words.

Beside it: ``mix.solvables`` (entries as libsolv solvables), ``mix.solvcache``
(the ``.solv`` cache), ``mix.search`` (the search index) and ``mix.explain``
(problems in mix's words). How mix's metadata maps onto libsolv is documented in
``docs/solver.md``; the version ordering (exactly libsolv's) in ``docs/versions.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path

import solv

from mix import solvcache
from mix.errors import ResolveError
from mix.explain import Problem, Requested, broken_dependents, explain
from mix.search import (
    SUBSTRING,
    SearchIndex,
    matching,
    matching_provides,
    provided_names,
    search_index_path,
)
from mix.solvables import Builder, Entry, IndexEntryError, dep_text
from mix.version import InvalidDependency, compare, parse_dependency

__all__ = ["Plan", "Request", "Solver", "SolverError"]


class SolverError(ResolveError):
    """No plan satisfies the request; ``str()`` explains why and what could be done.

    ``problems`` holds each problem separately for callers that want to format
    them (``--json``).
    """

    def __init__(self, message: str, problems: Sequence[Problem] = (), hint: str = "") -> None:
        super().__init__(message, hint)
        self.problems = list(problems)


@dataclass(frozen=True)
class Request:
    """What the user asked for. Install specs: ``name``, ``name>=1.0``, ``name=1.2-r1``."""

    install: Sequence[str] = ()
    remove: Sequence[str] = ()
    upgrade: Sequence[str] = ()
    upgrade_all: bool = False
    remove_dependents: bool = False
    drop_orphans: bool = True
    held: Sequence[str] = ()  # installed packages kept exactly as they are (mix hold)


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
    ``removals``: why each removed package goes.
    """

    install: list[Entry] = field(default_factory=list)
    remove: list[Entry] = field(default_factory=list)
    upgrade: list[tuple[Entry, Entry]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, Entry | None, Entry | None]] = field(default_factory=list)
    # Why each removed package goes: "requested", "orphan" (a dependency nothing needs
    # any more), "dependent" (needs what is removed: --cascade), or "replaced by NAME" /
    # "conflicts with NAME" (a new package takes its place).
    removals: dict[str, str] = field(default_factory=dict)


class Solver:
    """Resolve mix requests against repositories and the installed set with libsolv."""

    def __init__(self, arch: str = "x86_64") -> None:
        self.arch = arch
        self.pool = solv.Pool()
        # Debian's build of libsolv defaults to Debian semantics: always ask for RPM's.
        self.pool.setdisttype(solv.Pool.DISTTYPE_RPM)
        self.pool.setarch(arch)
        self._builder = Builder(self.pool)
        self._attributes = solvcache.EntryAttributes(self.pool)
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
        self._favor: dict[str, solvcache.Favor] = {}

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
                self._attributes.store(data, s.id, entry, repo.name)
        data.internalize()
        repo.internalize()

    def _write_cache(self, repo: solv.Repo, cache: Path, count: int) -> None:
        self.pool.createwhatprovides()
        self._favor_for(repo)
        solvcache.add_meta(repo, count, self._favor[repo.name])
        # The search index first: whenever the main cache is fresh, so is it.
        SearchIndex.write(search_index_path(cache), repo.solvables, self.entry)
        solvcache.write_solv(repo, cache)

    def _load_cache(self, repo: solv.Repo, cache: Path, index: Path | None) -> bool:
        favor = solvcache.load(repo, cache, index)
        if favor is None:
            return False
        self._favor[repo.name] = favor
        return True

    # ---- entries --------------------------------------------------------

    def _dep_str(self, dep_id: int) -> str:
        text = self._dep_texts.get(dep_id)
        if text is None:
            text = self._dep_texts[dep_id] = dep_text(self.pool, dep_id)
        return text

    def entry(self, s: solv.XSolvable) -> Entry:
        """The mix entry of a solvable (rebuilt from the cache's attributes if needed)."""
        entry = self._entries.get(s.id)
        if entry is None:
            entry = self._entries[s.id] = self._attributes.restore(s, self._dep_str)
        return entry

    def _ready(self) -> None:
        if not self._whatprovides_ready:
            self.pool.addfileprovides()
            self.pool.createwhatprovides()
            self._whatprovides_ready = True
            for repo in self.pool.repos_iter():
                if repo.name not in self._favor:
                    self._favor_for(repo)

    def _favor_for(self, repo: solv.Repo) -> None:
        """Work out which of ``repo``'s packages "a | b" requirements make mix prefer.

        For each requirement, the first alternative that anything provides wins:
        its providers are preferred (low level) and a package carrying exactly
        that name more so (high level). Packages that provide the name of
        another real package ("stand-ins", like a codec build that provides
        the plain codec library's name) are disfavoured, so that a requirement
        on that name gets the real package, as apt would choose. libsolv takes
        these as SOLVER_FAVOR / SOLVER_DISFAVOR jobs: global hints, not per
        requirement. Needs whatprovides.
        """
        mine = {s.id for s in repo.solvables}
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

    def search(self, term: str, limit: int | None = None) -> list[Entry]:
        """Available packages whose name or description contains ``term`` (case-insensitive)."""
        keys = (solv.SOLVABLE_NAME, solv.SOLVABLE_DESCRIPTION)
        result = [s for s in matching(self.pool, keys, term) if s.repo != self._installed]
        seen = {s.id for s in result}
        for s in matching(self.pool, (solv.SOLVABLE_PROVIDES,), term):
            if s.id not in seen and s.repo != self._installed and matching_provides(
                    provided_names(s.lookup_deparray(solv.SOLVABLE_PROVIDES), s.name), term):
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
        requested: Requested = []
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
        for name in request.held:
            if self._installed_by_name(name):
                jobs.append(pool.Job(solv.Job.SOLVER_LOCK | solv.Job.SOLVER_SOLVABLE_NAME,
                                     pool.str2id(name)))
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
            explained = [explain(pool, self.arch, p, requested, jobs) for p in problems]
            raise SolverError(
                "cannot satisfy the request:\n"
                + "\n".join(p.explain(i) for i, p in enumerate(explained, 1)),
                explained,
                hint="choose one of the ways out above, or run 'mix update' if the "
                "repositories may be out of date",
            )
        plan = self._plan(solver.transaction(), requested)
        for old in plan.remove:
            name = old["name"]
            if name in request.remove:
                plan.removals.setdefault(name, "requested")
            else:
                plan.removals.setdefault(
                    name, "orphan" if self._reasons.get(name) == "dependency" else "dependent")
        return plan

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
            text = dep_text(self.pool, dep)
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
                raise self._not_for_this_machine(dep.name, foreign)
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
            raise self._not_for_this_machine(dep.name, sorted({s.arch for s in candidates}))
        if self._installed_by_name(dep.name) and not any(s.isinstalled() for s in candidates):
            # A version constraint the installed package does not meet asks to change it
            # (up or down), as 'name=version' does: to the best matching version (highest
            # repository priority, then newest), which libsolv installs in its place.
            def better(a: solv.XSolvable, b: solv.XSolvable) -> int:
                pa, pb = a.repo.priority, b.repo.priority
                return (pa > pb) - (pa < pb) or compare(a.evr, b.evr)

            best = max(installable, key=cmp_to_key(better))
            return pool.Job(solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE, best.id), candidates
        return pool.Job(solv.Job.SOLVER_INSTALL | how, dep_id), candidates

    def _not_for_this_machine(self, name: str, arches: list[str]) -> SolverError:
        return SolverError(
            f"{name} is not available for {self.arch} (only for {', '.join(arches)})",
            hint="install a package built for this machine, or one marked noarch",
        )

    def _foreign_arches(self, name: str) -> list[str]:
        """Architectures of packages called ``name`` that cannot run here."""
        arches = set()
        for d in self.pool.Dataiterator(solv.SOLVABLE_NAME, name, solv.Dataiterator.SEARCH_STRING):
            arches.add(self.pool.id2solvable(d.solvid).arch)
        return sorted(arches)

    def _unknown(self, name: str) -> str:
        similar = sorted(
            {str(d.str) for d in self.pool.Dataiterator(solv.SOLVABLE_NAME, name, SUBSTRING)}
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

    def _plan(self, trans: solv.Transaction, requested: Requested) -> Plan:
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
        # installed packages that a new one replaces or conflicts with: removed first
        displaced: dict[int, str] = {}
        new_solvables = [s for s in trans.steps() if not s.isinstalled()] \
            if not trans.isempty() else []
        for s in new_solvables:
            old = trans.othersolvable(s)
            if old is not None and old.isinstalled() and old.name == s.name:
                replaced.add(old.id)
            others = [o for o in trans.allothersolvables(s)
                      if o.isinstalled() and o.name != s.name]
            displaced.update((o.id, f"replaced by {s.name}") for o in others)
            # A package that replaces an explicitly installed one takes over its mark.
            if any(self._reasons.get(o.name) == "explicit" for o in others):
                explicit.add(s.name)
        leaving = [s for s in trans.steps() if s.isinstalled() and s.id not in replaced] \
            if not trans.isempty() else []
        for sid, by in self._conflicting(leaving, new_solvables).items():
            displaced.setdefault(sid, f"conflicts with {by}")
        removals_first = [s for s in leaving if s.id in displaced]
        for s in removals_first:
            old_entry = self.entry(s)
            plan.remove.append(old_entry)
            plan.steps.append(("remove", old_entry, None))
            plan.removals[s.name] = displaced[s.id]
        for s in trans.steps() if not trans.isempty() else ():
            if s.isinstalled():
                if s.id in replaced or s.id in displaced:
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

    @staticmethod
    def _conflicting(leaving: list[solv.XSolvable], new: list[solv.XSolvable]
                     ) -> dict[int, str]:
        """The leaving packages that conflict with a new one (either way round): their
        ids, each with the new package's name."""
        out: dict[int, str] = {}
        for n in new:
            for dep in n.lookup_deparray(solv.SOLVABLE_CONFLICTS):
                for r in leaving:
                    if r.matchesdep(solv.SOLVABLE_PROVIDES, dep):
                        out.setdefault(r.id, n.name)
        for r in leaving:
            if r.id in out:
                continue
            for dep in r.lookup_deparray(solv.SOLVABLE_CONFLICTS):
                hit = next((n for n in new if n.matchesdep(solv.SOLVABLE_PROVIDES, dep)), None)
                if hit is not None:
                    out[r.id] = hit.name
                    break
        return out

    def _refuse_breaking_dependents(self, jobs: list[solv.Job], request: Request) -> None:
        """Name the installed packages a removal would break, if that is the only problem."""
        solver = self._new_solver(allow_uninstall=True)
        if solver.solve(jobs):
            return
        asked = set(request.remove)
        trans = solver.transaction()
        gone = {s.name for s in trans.steps() if s.isinstalled()} if not trans.isempty() else set()
        installed = self._installed.solvables if self._installed is not None else []
        gone_pkgs = [s for s in installed if s.name in gone and s.name not in asked]
        lines = broken_dependents(self.pool, gone_pkgs, gone, asked)
        if not lines:
            return
        names = ", ".join(sorted(asked))
        raise SolverError(
            f"removing {names} would break installed packages that depend on it:\n"
            + "\n".join(lines),
            hint=f"remove them as well (mix remove --cascade {names}), or keep {names}",
        )
