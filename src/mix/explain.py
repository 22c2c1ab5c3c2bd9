"""Why a request cannot be satisfied, in mix's words.

libsolv reports each problem as the rules it blames and the ways out it proposes;
mix words every rule and way out for people, adds the shortest chain of
requirements from the requested package to the deepest culprit, and names the
installed packages a removal would break. ``docs/solver.md`` ("Explanations")
shows the output.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import solv

from mix.solvables import dep_text

__all__ = ["Problem", "Requested", "broken_dependents", "explain", "pkg_text"]

# Each install spec with the solvables that could answer it.
Requested = list[tuple[str, list[solv.XSolvable]]]


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


def pkg_text(s: solv.XSolvable) -> str:
    """A package as people read it: name-version, marked when it is the installed one."""
    return f"{s.name}-{s.evr}" + (" (installed)" if s.isinstalled() else "")


def explain(
    pool: solv.Pool,
    arch: str,
    problem: solv.Problem,
    requested: Requested,
    jobs: list[solv.Job],
) -> Problem:
    """One libsolv ``problem`` in mix's words: every rule it blames, every way out, and
    the chain from what was ``requested`` to the deepest culprit."""
    causes: list[str] = []
    culprits: list[solv.XSolvable] = []
    for rule in problem.findallproblemrules():
        for info in rule.allinfos():
            text = _rule_text(pool, arch, info)
            if text and text not in causes:
                causes.append(text)
            if info.solvable is not None:
                culprits.append(info.solvable)
    if not causes:
        causes.append(str(problem))
    solutions = []
    for solution in problem.solutions():
        parts = [_element_text(pool, el, jobs) for el in solution.elements(True)]
        parts = [p for p in parts if p]
        if parts:
            solutions.append("; ".join(parts))
    chain = _chain(pool, requested, culprits)
    return Problem(causes, solutions, chain)


def _rule_text(pool: solv.Pool, arch: str, info: Any) -> str:
    s, other, dep = info.solvable, info.othersolvable, info.dep
    what = dep_text(pool, dep) if dep is not None else ""
    t = info.type
    R = solv.Solver
    if t == R.SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP:
        return f"{pkg_text(s)} requires {what}, but no package in the repositories provides it"
    if t == R.SOLVER_RULE_PKG_REQUIRES:
        providers = [pkg_text(p) for p in pool.whatprovides(dep.id)][:6]
        return (
            f"{pkg_text(s)} requires {what}, but none of its providers "
            f"({', '.join(providers)}) can be installed"
        )
    if t == R.SOLVER_RULE_PKG_CONFLICTS:
        return f"{pkg_text(s)} conflicts with {what}, which {pkg_text(other)} provides"
    if t == R.SOLVER_RULE_PKG_SELF_CONFLICT:
        return f"{pkg_text(s)} conflicts with {what}, which it provides itself"
    if t == R.SOLVER_RULE_PKG_SAME_NAME:
        return f"only one version of {s.name} can be installed: {pkg_text(s)} or {pkg_text(other)}"
    if t in (
        R.SOLVER_RULE_PKG_OBSOLETES,
        R.SOLVER_RULE_PKG_INSTALLED_OBSOLETES,
        R.SOLVER_RULE_PKG_IMPLICIT_OBSOLETES,
    ):
        return f"{pkg_text(s)} replaces {what}, which {pkg_text(other)} provides"
    if t == R.SOLVER_RULE_PKG_NOT_INSTALLABLE:
        if not pool.isknownarch(s.archid):
            return f"{pkg_text(s)} is built for {s.arch}, not for {arch}"
        return f"{pkg_text(s)} cannot be installed"
    if t == R.SOLVER_RULE_JOB_NOTHING_PROVIDES_DEP:
        return f"you asked for {what}, but no package in the repositories provides it"
    if t == R.SOLVER_RULE_JOB_UNKNOWN_PACKAGE:
        return f"you asked for {what}, but there is no such package"
    if t == R.SOLVER_RULE_JOB_PROVIDED_BY_SYSTEM:
        return f"{what} is provided by the system itself"
    if t == R.SOLVER_RULE_JOB:
        return ""
    if t == R.SOLVER_RULE_UPDATE or t == R.SOLVER_RULE_FEATURE:
        return f"installed {pkg_text(s)} is kept (mix does not upgrade or remove it on its own)"
    if t == R.SOLVER_RULE_INFARCH:
        return f"{pkg_text(s)} has an architecture inferior to an alternative"
    if t == R.SOLVER_RULE_BEST:
        return f"the newest version of {s.name} cannot be installed"
    return str(info.problemstr())


def _element_text(pool: solv.Pool, el: Any, jobs: list[solv.Job]) -> str:
    S = solv.Solver
    t = el.type
    if t == S.SOLVER_SOLUTION_POOLJOB:
        return ""
    if t == S.SOLVER_SOLUTION_JOB:
        job = jobs[el.jobidx]
        how = job.how & solv.Job.SOLVER_JOBMASK
        target = dep_text(pool, job.what) if job.what else "everything"
        if how == solv.Job.SOLVER_INSTALL:
            return f"do not install {target}"
        if how == solv.Job.SOLVER_ERASE:
            return f"do not remove {target}"
        if how == solv.Job.SOLVER_UPDATE:
            return f"do not upgrade {target}"
        return ""
    if t == S.SOLVER_SOLUTION_ERASE:
        return f"remove {pkg_text(el.solvable)}"
    if t == S.SOLVER_SOLUTION_INFARCH:
        return f"install {pkg_text(el.solvable)} despite its inferior architecture"
    if t == S.SOLVER_SOLUTION_BEST:
        return f"accept an older version of {el.solvable.name} than {pkg_text(el.solvable)}"
    if t in (
        S.SOLVER_SOLUTION_REPLACE,
        S.SOLVER_SOLUTION_REPLACE_DOWNGRADE,
        S.SOLVER_SOLUTION_REPLACE_ARCHCHANGE,
        S.SOLVER_SOLUTION_REPLACE_NAMECHANGE,
        S.SOLVER_SOLUTION_REPLACE_VENDORCHANGE,
    ):
        return f"replace {pkg_text(el.solvable)} with {pkg_text(el.replacement)}"
    if el.solvable is not None and el.solvable.isinstalled():
        return f"remove {pkg_text(el.solvable)}"
    if el.solvable is not None:
        return f"ignore some dependencies of {pkg_text(el.solvable)} (breaks it; not recommended)"
    return str(el)


def _chain(
    pool: solv.Pool, requested: Requested, culprits: list[solv.XSolvable]
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
        for dep in pool.id2solvable(sid).lookup_deparray(solv.SOLVABLE_REQUIRES):
            for p in pool.whatprovides(dep.id):
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
    names = [pkg_text(pool.id2solvable(sid)) for sid in best]
    names[-1] += f" (you asked for {start[best[-1]]})"
    return names


def broken_dependents(
    pool: solv.Pool, gone_pkgs: list[solv.XSolvable], gone: set[str], asked: set[str]
) -> list[str]:
    """Lines naming each package of ``gone_pkgs`` that removing ``asked`` breaks, with the
    requirements it loses; ``gone``: the names of every package the removal takes.
    """
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
                providers = [p for p in pool.whatprovides(dep.id) if p.isinstalled()]
                if (
                    providers
                    and all(p.name in gone for p in providers)
                    and any(p.name in culprits for p in providers)
                ):
                    text = dep_text(pool, dep)
                    if text not in needs.setdefault(s.name, set()):
                        needs[s.name].add(text)
                        changed = True
                    culprits.add(s.name)
    return [
        f"  {pkg_text(s)} (requires {', '.join(sorted(needs[s.name]))})"
        for s in gone_pkgs
        if s.name in needs
    ]
