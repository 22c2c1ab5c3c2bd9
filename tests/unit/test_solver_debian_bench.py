"""The Debian scale-test tools in bench/: version mapping, relation mapping, plan checker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from debian_index import entry, mix_version, relation_version
from plan_check import check_debian, check_mix, dpkg_compare, final_set

from mix.solver import Request, Solver
from mix.version import compare, matches

PAIRS = [
    ("1.0", "1.0-0"),
    ("1.0~rc1", "1.0"),
    ("1.0+b1", "1.0.1"),
    ("1:0.1", "2"),
    ("2.36-9+deb12u4", "2.36-9"),
    ("0.0.26-3", "0.0.26"),
    ("72.1~rc-1~", "72.1-3"),
    ("1.2.3-1~bpo12+1", "1.2.3-1"),
    ("7:5.1.4-0+deb12u1", "7:5.1.3-1"),
]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_mapped_versions_keep_dpkg_order_on_common_shapes(a: str, b: str) -> None:
    assert _sign(compare(mix_version(a), mix_version(b))) == _sign(dpkg_compare(a, b))


@pytest.mark.parametrize(
    ("candidate", "op", "bound", "expected"),
    [
        ("0.5.4.0", "<", "0.5.4.0+", True),  # dpkg's "just after X": X+ -> X^
        ("0.5.4.0.1", "<", "0.5.4.0+", False),
        ("4.3.4+~cs4.1.7-1", ">=", "4.3.4", True),  # bundled-JS versions: +~ -> ^~
        ("2.0.3-17", "<", "2.0.3-z", True),  # "every revision of 2.0.3"
        ("1:2.39.5-0+deb12u2", "<", "1:2.39.5-.", True),
        ("2.0.4-1", "<", "2.0.3-z", False),
        ("1.2.0-1", ">=", "1.2.0-~~", True),  # lowest revision bound keeps its meaning
    ],
)
def test_dpkg_idioms_in_relations_keep_their_meaning(
    candidate: str, op: str, bound: str, expected: bool
) -> None:
    deb_op = {"<": "<<", ">=": ">="}[op]
    from plan_check import _DEB_TEST

    assert _DEB_TEST[deb_op](dpkg_compare(candidate, bound)) == expected
    assert matches(mix_version(candidate), op, relation_version(bound)) == expected


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg")
@pytest.mark.parametrize(("a", "b"), [*PAIRS, ("1.2a", "1.2+"), ("1.0-1", "1.0.1")])
def test_checker_dpkg_compare_agrees_with_dpkg(a: str, b: str) -> None:
    def dpkg(op: str) -> bool:
        return subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode == 0

    expected = -1 if dpkg("lt") else 0 if dpkg("eq") else 1
    assert _sign(dpkg_compare(a, b)) == expected


def test_versioned_relations_ignore_unversioned_provides_as_in_debian() -> None:
    unversioned = {"mta"}
    e = entry(
        {
            "Package": "mailer",
            "Version": "1.0",
            "Architecture": "all",
            "Depends": "mta, libc6 (>> 2.36) | musl",
            "Breaks": "mta (<< 2)",
            "Conflicts": "mta",
            "Provides": "mta, smtp (= 1.0)",
            "Replaces": "mta, oldmailer",
        },
        unversioned,
    )
    assert e is not None
    assert e["version"] == "1.0-0"
    assert e["arch"] == "noarch"
    assert e["dependencies"] == ["mta | mta@any", "libc6>2.36-0 | musl"]
    assert e["provides"] == ["mta@any", "smtp=1.0-0"]
    assert e["conflicts"] == ["mta", "mta@any", "mta<2-0"]
    assert e["replaces"] == ["mta"]  # oldmailer is replaced but not conflicted: files only


def _repo() -> list[dict[str, object]]:
    empty = {"dependencies": [], "provides": [], "conflicts": [], "replaces": []}
    return [
        {**empty, "name": "app", "version": "1-0", "dependencies": ["lib>=2-0"]},
        {**empty, "name": "lib", "version": "2-1"},
        {**empty, "name": "lib", "version": "1-1"},
        {**empty, "name": "bad", "version": "1-0", "conflicts": ["lib"]},
    ]


def test_plan_checker_accepts_solver_plan_and_flags_broken_ones() -> None:
    repo = _repo()
    solver = Solver()
    solver.add_repo("main", repo)
    plan = solver.solve(Request(install=["app"]))
    steps = [
        {"action": k, "name": n["name"], "version": n["version"]} for k, _, n in plan.steps if n
    ]
    assert check_mix(final_set(repo, [], steps)) == []
    missing = [s for s in steps if s["name"] != "lib"]
    assert check_mix(final_set(repo, [], missing)) == ["app-1-0 requires lib>=2-0: not satisfied"]
    old = [*missing, {"action": "install", "name": "lib", "version": "1-1"}]
    assert check_mix(final_set(repo, [], old)) == ["app-1-0 requires lib>=2-0: not satisfied"]
    clash = [*steps, {"action": "install", "name": "bad", "version": "1-0"}]
    assert check_mix(final_set(repo, [], clash)) == ["bad-1-0 conflicts lib: present: lib-2-1"]


def test_debian_checker_reads_the_original_relations(tmp_path: Path) -> None:
    lists = tmp_path / "x_Packages"
    lists.write_text(
        "Package: app\nVersion: 1\nArchitecture: amd64\nDepends: lib (>> 1), mta\n\n"
        "Package: lib\nVersion: 1-1\nArchitecture: amd64\n\n"
        "Package: postfix\nVersion: 3\nArchitecture: amd64\nProvides: mta\n"
        "Breaks: lib (<< 1-0)\n"
    )
    packages = [
        {"name": "app", "version": "1-0"},
        {"name": "lib", "version": "1-1"},
        {"name": "postfix", "version": "3-0"},
    ]
    # dpkg: 1-1 >> 1 holds (1 == 1-0 < 1-1); the unversioned provide meets "mta".
    assert check_debian(packages, str(lists)) == []
    assert check_debian(packages[:2], str(lists))[0].startswith("app 1 Depends")
