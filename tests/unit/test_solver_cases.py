"""Solver behaviour pinned by data files: tests/unit/solver_cases/*.toml.

Each file holds repositories, the installed set, a request and the expected
plan (or the expected error text). Packages are written "name-version".
Expectation keys:
  install / remove / upgrade   the plan's lists, in any order ("old -> new" for upgrades)
  install_order / remove_order the same lists in this exact order
  steps                        the whole transaction in order ("install x-1", "upgrade y-2", "remove z-1")
  last                         the last package installed
  reasons                      name -> "explicit" | "dependency" (only the names listed)
  error                        substrings that the SolverError text must contain
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from mix.solver import Plan, Request, Solver, SolverError

CASES = sorted((Path(__file__).parent / "solver_cases").glob("*.toml"))


def _nv(entry: dict[str, Any]) -> str:
    return f"{entry['name']}-{entry['version']}"


def _solve(case: dict[str, Any]) -> Plan:
    solver = Solver(arch=case.get("arch", "x86_64"))
    for repo in case.get("repo", []):
        packages = [{"arch": "noarch", **p} for p in repo.get("packages", [])]
        solver.add_repo(repo["name"], packages, priority=repo.get("priority", 0))
    installed = [{"arch": "noarch", **p} for p in case.get("installed", [])]
    solver.set_installed(installed)
    return solver.solve(Request(**case.get("request", {})))


def _check_install_order(plan: Plan, case: dict[str, Any]) -> None:
    """Every package's requirements come earlier in the plan or are already installed,
    unless they are part of a cycle (then any order is allowed among its members)."""
    names = {e["name"] for e in case.get("installed", [])}
    later = {e["name"] for e in plan.install} | {new["name"] for _, new in plan.upgrade}
    seen: set[str] = set()
    for step, _, new in plan.steps:
        if new is None:
            continue
        for dep in new.get("dependencies", []):
            choices = {
                c.strip().split("<")[0].split(">")[0].split("=")[0].split("!")[0]
                for c in dep.split("|")
            }
            if choices & seen or choices & (names - later) or not choices & later:
                continue
            # A requirement installed later is only acceptable inside a cycle.
            assert case["expect"].get("last") or step == "upgrade", (
                f"{_nv(new)} installed before its requirement {dep}"
            )
        seen.add(new["name"])


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_solver_case(path: Path) -> None:
    case = tomllib.loads(path.read_text())
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(SolverError) as info:
            _solve(case)
        text = str(info.value)
        for fragment in expect["error"]:
            assert fragment in text, f"expected {fragment!r} in:\n{text}"
        return
    plan = _solve(case)
    install = [_nv(e) for e in plan.install]
    remove = [_nv(e) for e in plan.remove]
    upgrade = [f"{_nv(old)} -> {_nv(new)}" for old, new in plan.upgrade]
    if "install" in expect:
        assert sorted(install) == sorted(expect["install"])
    if "install_order" in expect:
        assert install == expect["install_order"]
    if "remove" in expect:
        assert sorted(remove) == sorted(expect["remove"])
    if "remove_order" in expect:
        assert remove == expect["remove_order"]
    if "upgrade" in expect:
        assert sorted(upgrade) == sorted(expect["upgrade"])
    if "steps" in expect:
        steps = [f"{kind} {_nv(new if new is not None else old)}" for kind, old, new in plan.steps]
        assert steps == expect["steps"]
    if "last" in expect:
        assert install[-1] == expect["last"]
    for name, reason in expect.get("reasons", {}).items():
        assert plan.reasons.get(name) == reason, f"reason of {name}: {plan.reasons}"
    _check_install_order(plan, case)
