"""mix's version ordering must be exactly libsolv's (RPM semantics), pair for pair."""

from __future__ import annotations

import random

import pytest
import solv

from mix.version import (
    Dependency,
    InvalidDependency,
    InvalidVersion,
    compare,
    matches,
    parse_dependency,
    parse_version,
)

TRICKY = [
    "0",
    "1",
    "01",
    "1.0",
    "1.00",
    "1.0.0",
    "1.0a",
    "1.0.a",
    "1.0~rc1",
    "1.0~~",
    "1.0~",
    "1.0^",
    "1.0^git1",
    "1.0^git1~x",
    "1.0.1",
    "1.0+dfsg",
    "1.0_1",
    "1a",
    "1b",
    "a1",
    "A1",
    "alpha",
    "beta",
    "1.0-r1",
    "1.0-r2",
    "1.0-1",
    "1.0-1.1",
    "1.0-1~",
    "1.0-1^",
    "1:0.5",
    "0:1.0",
    "2:0",
    "00:1.0",
    "10:1",
    "9:1",
    "1.0-0",
    "2.0p1",
    "2.0p1-1",
    "1.10",
    "1.9",
    "1.0010",
    "1.010",
    "999999999999999999999",
    "1.0-r01",
    "3.0.0~beta2-r1",
    "1.0+",
    "1.0_",
]
ALPHABET = "0123456789aZz.~^_+"


def _libsolv_cmp() -> tuple[solv.Pool, object]:
    pool = solv.Pool()
    pool.setdisttype(solv.Pool.DISTTYPE_RPM)
    return pool, pool.add_repo("versions")


def _random_fragment(rng: random.Random) -> str:
    first = rng.choice("0123456789abzAZ")
    return first + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))


def _random_version(rng: random.Random) -> str:
    text = _random_fragment(rng)
    if rng.random() < 0.2:
        text = f"{rng.randint(0, 3)}:{text}"
    if rng.random() < 0.4:
        text = f"{text}-{_random_fragment(rng)}"
    return text


def _pairs() -> list[tuple[str, str]]:
    rng = random.Random(20261126)
    pairs = [(a, b) for a in TRICKY for b in TRICKY]
    for _ in range(6000):
        a = _random_version(rng)
        # Half of the pairs share a prefix so that the deeper rules get exercised.
        b = (
            a[: rng.randint(1, len(a))] + _random_fragment(rng)
            if rng.random() < 0.5
            else _random_version(rng)
        )
        try:
            parse_version(b)
        except InvalidVersion:
            b = _random_version(rng)
        pairs.append((a, b))
    return pairs


def test_compare_equals_libsolv_evrcmp_on_tricky_and_random_pairs() -> None:
    _, repo = _libsolv_cmp()
    mismatches = []
    for a, b in _pairs():
        sa, sb = repo.add_solvable(), repo.add_solvable()
        sa.evr, sb.evr = a, b
        expected = sa.evrcmp(sb)
        if compare(a, b) != expected:
            mismatches.append((a, b, compare(a, b), expected))
    assert mismatches == []


def test_matches_equals_libsolv_dependency_matching() -> None:
    """Each (package version, requirement) pair is decided as libsolv's solver decides it."""
    pool, repo = _libsolv_cmp()
    rng = random.Random(7)
    versions = TRICKY + [_random_version(rng) for _ in range(150)]
    flags = {
        "<": solv.REL_LT,
        "<=": solv.REL_LT | solv.REL_EQ,
        "=": solv.REL_EQ,
        ">=": solv.REL_GT | solv.REL_EQ,
        ">": solv.REL_GT,
        "!=": solv.REL_LT | solv.REL_GT,
    }
    pkgs = []
    for i, v in enumerate(versions):
        s = repo.add_solvable()
        s.name, s.evr, s.arch = f"p{i}", v, "noarch"
        s.add_provides(pool.rel2id(s.nameid, s.evrid, solv.REL_EQ))
        pkgs.append(s)
    repo.internalize()
    pool.createwhatprovides()
    mismatches = []
    for _ in range(8000):
        i = rng.randrange(len(versions))
        req = rng.choice(versions)
        op = rng.choice(list(flags))
        dep = pool.Dep(f"p{i}").Rel(flags[op], pool.Dep(req))
        expected = pkgs[i].matchesdep(solv.SOLVABLE_PROVIDES, dep)
        if matches(versions[i], op, req) != expected:
            mismatches.append((versions[i], op, req, expected))
    assert mismatches == []


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0~rc1", "1.0", -1),  # tilde: a pre-release sorts first
        ("1.0", "1.0^git3", -1),  # caret: a post-release snapshot sorts after...
        ("1.0^git3", "1.0.1", -1),  # ...but before the next version
        ("1.0a", "1.0", 1),  # a trailing letter segment makes it newer
        ("1.0a", "1.0.1", -1),  # digits beat letters
        ("1.01", "1.1", 0),  # leading zeros ignored
        ("1.0", "1.0-r1", -1),  # no release sorts first
        ("1:0.1", "9.9", 1),  # epoch wins
        ("0:1.0", "1.0", 0),  # missing epoch is epoch 0
        ("1.0_1", "1.0.1", 0),  # any non-alphanumeric is just a separator
        ("2:9.2p1-2", "2:9.2-2", 1),
    ],
)
def test_documented_examples(a: str, b: str, expected: int) -> None:
    assert compare(a, b) == expected
    assert compare(b, a) == -expected


@pytest.mark.parametrize(
    "bad", ["", "-1", "1-", "1-2-3", "a:1", "1:", ":1", "1 .0", "1.0/2", "é1", ".1"]
)
def test_invalid_versions_are_refused_naming_the_input(bad: str) -> None:
    with pytest.raises(InvalidVersion) as info:
        parse_version(bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_dependency_forms() -> None:
    assert parse_dependency("dep2>=1.0") == Dependency("dep2", ">=", "1.0")
    assert parse_dependency("  dep2 >= 1.0 ") == Dependency("dep2", ">=", "1.0")
    assert parse_dependency("libc") == Dependency("libc")
    assert parse_dependency("x==2") == Dependency("x", "=", "2")
    dep = parse_dependency("a>=1 | b | c!=2-r1")
    assert dep.choices() == (
        Dependency("a", ">=", "1"),
        Dependency("b"),
        Dependency("c", "!=", "2-r1"),
    )
    assert str(dep) == "a>=1 | b | c!=2-r1"
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert parse_dependency(f"n{op}1").op == op


def test_dependency_matches_names_versions_and_unversioned_provides() -> None:
    dep = parse_dependency("a>=2 | b")
    assert dep.matches("a", "2.0-r1")
    assert not dep.matches("a", "1.9")
    assert dep.matches("b", "0.1")
    assert dep.matches("a", None)  # an unversioned provide satisfies any version (RPM rule)
    assert not dep.matches("c", "9")


@pytest.mark.parametrize(
    "bad", ["", "a>=", ">=1", "a >= 1 2", "a | ", "a>=1.0-", "a b", "a>=x:1", "a~b"]
)
def test_invalid_dependencies_are_refused_naming_the_input(bad: str) -> None:
    with pytest.raises(InvalidDependency) as info:
        parse_dependency(bad)
    assert repr(bad) in str(info.value)
