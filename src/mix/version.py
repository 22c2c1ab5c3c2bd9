"""Versions and dependency expressions of mix packages.

mix orders versions exactly as its resolver does: libsolv with RPM semantics
(``rpmvercmp`` on ``[epoch:]version[-release]``). This module is a pure-Python
transcription of libsolv's ``pool_evrcmp_str`` / ``solv_vercmp_rpm`` so that
code which only needs to compare or validate versions (index validation,
``mix list --upgradable``, the package builder) does not have to build a
libsolv pool; ``tests/unit/test_solver_version.py`` cross-checks it against
libsolv itself on thousands of random and hand-picked pairs. The rules are
written out with examples in ``docs/versions.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "OPERATORS",
    "Dependency",
    "InvalidDependency",
    "InvalidVersion",
    "Version",
    "compare",
    "matches",
    "parse_dependency",
    "parse_version",
]

# The comparison operators of dependencies, provides and install specs.
OPERATORS = ("!=", "<=", ">=", "=", "<", ">")

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._+~^]*"
_VERSION_RE = re.compile(
    rf"(?:(?P<epoch>[0-9]+):)?(?P<version>{_SEGMENT})(?:-(?P<release>[A-Za-z0-9._+~^]+))?"
)
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@-]*")
_TERM_RE = re.compile(
    r"\s*(?P<name>[^\s<>=!|]+)\s*(?:(?P<op>!=|<=|>=|==|=|<|>)\s*(?P<version>\S+))?\s*"
)


class InvalidVersion(ValueError):
    """A version string that mix cannot order."""

    def __init__(self, text: str, why: str) -> None:
        super().__init__(
            f"invalid version {text!r}: {why} "
            "(expected [epoch:]version[-release], e.g. '1.2.3-r1' or '2:9.2p1-2')"
        )
        self.text = text


class InvalidDependency(ValueError):
    """A dependency expression that mix cannot parse."""

    def __init__(self, text: str, why: str, syntax: bool = True) -> None:
        """syntax: add what a dependency looks like (not when why already says what a
        version looks like)."""
        super().__init__(
            f"invalid dependency {text!r}: {why}"
            + (" (expected 'name', 'name>=1.0' with one of = != < <= > >=, or 'a | b>=2')"
               if syntax else "")
        )
        self.text = text


@dataclass(frozen=True, order=False)
class Version:
    """A parsed ``[epoch:]version[-release]``; ``str()`` gives the original text."""

    epoch: str | None
    version: str
    release: str | None

    def __str__(self) -> str:
        text = self.version
        if self.epoch is not None:
            text = f"{self.epoch}:{text}"
        if self.release is not None:
            text = f"{text}-{self.release}"
        return text


def parse_version(text: str) -> Version:
    """Parse and validate a version string, raising InvalidVersion naming it."""
    if not isinstance(text, str):
        raise InvalidVersion(repr(text), "not a string")
    if not text:
        raise InvalidVersion(text, "empty")
    m = _VERSION_RE.fullmatch(text)
    if m is None:
        bad = sorted({c for c in text if not (c.isascii() and (c.isalnum() or c in "._+~^:-"))})
        if bad:
            why = "contains " + ", ".join(repr(c) for c in bad)
        elif text.count("-") > 1:
            why = "more than one '-' (only the release is separated by '-')"
        elif ":" in text:
            why = "an epoch must be digits followed by ':' at the start"
        else:
            why = "version and release must start with a letter or digit"
        raise InvalidVersion(text, why)
    return Version(m.group("epoch"), m.group("version"), m.group("release"))


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def vercmp(a: str, b: str) -> int:
    """rpmvercmp of two version (or release, or epoch) fragments, as libsolv does it.

    Segments are maximal runs of digits or of ASCII letters; every other
    character separates them. Digits compare numerically (leading zeros
    ignored) and beat letters; letters compare as bytes. ``~`` sorts before
    anything, even the end of the string ("1.0~rc1" < "1.0"); ``^`` sorts
    after the end of the string but before any further segment
    ("1.0" < "1.0^git" < "1.0.1").
    """
    i, j, na, nb = 0, 0, len(a), len(b)
    while True:
        while i < na and not (_is_digit(a[i]) or _is_alpha(a[i]) or a[i] in "~^"):
            i += 1
        while j < nb and not (_is_digit(b[j]) or _is_alpha(b[j]) or b[j] in "~^"):
            j += 1
        if i < na and a[i] == "~":
            if j < nb and b[j] == "~":
                i, j = i + 1, j + 1
                continue
            return -1
        if j < nb and b[j] == "~":
            return 1
        if i < na and a[i] == "^":
            if j < nb and b[j] == "^":
                i, j = i + 1, j + 1
                continue
            return -1 if j < nb else 1
        if j < nb and b[j] == "^":
            return 1 if i < na else -1
        if i >= na or j >= nb:
            break
        if _is_digit(a[i]) or _is_digit(b[j]):
            # A digit run against a letter run: the letter side has an empty
            # digit run, so the numeric side is longer and wins.
            while i + 1 < na and a[i] == "0" and _is_digit(a[i + 1]):
                i += 1
            while j + 1 < nb and b[j] == "0" and _is_digit(b[j + 1]):
                j += 1
            ei, ej = i, j
            while ei < na and _is_digit(a[ei]):
                ei += 1
            while ej < nb and _is_digit(b[ej]):
                ej += 1
            la, lb = ei - i, ej - j
            if la != lb:
                return 1 if la > lb else -1
            sa, sb = a[i:ei], b[j:ej]
            if sa != sb:
                return 1 if sa > sb else -1
        else:
            ei, ej = i, j
            while ei < na and _is_alpha(a[ei]):
                ei += 1
            while ej < nb and _is_alpha(b[ej]):
                ej += 1
            sa, sb = a[i:ei], b[j:ej]
            if sa != sb:
                return 1 if sa > sb else -1
        i, j = ei, ej
    if i < na:
        return 1
    if j < nb:
        return -1
    return 0


def _epoch_cmp(a: str | None, b: str | None) -> int:
    # A missing epoch equals epoch 0 (libsolv without "promoteepoch").
    if a is not None and b is not None:
        return vercmp(a, b)
    if a is not None:
        return 0 if a.strip("0") == "" else 1
    if b is not None:
        return 0 if b.strip("0") == "" else -1
    return 0


def _evrcmp(a: Version, b: Version) -> int:
    r = _epoch_cmp(a.epoch, b.epoch) or vercmp(a.version, b.version)
    if r:
        return r
    if a.release is None or b.release is None:
        # A version without a release sorts before the same version with one.
        return (a.release is not None) - (b.release is not None)
    return vercmp(a.release, b.release)


def compare(a: str | Version, b: str | Version) -> int:
    """Order two versions: -1 if a < b, 0 if equal, 1 if a > b.

    Exactly libsolv's ``pool_evrcmp_str(..., EVRCMP_COMPARE)`` with RPM
    semantics, which is how the resolver orders candidates. A version without
    release sorts before the same version with one ("1.0" < "1.0-r1").
    """
    va = a if isinstance(a, Version) else parse_version(a)
    vb = b if isinstance(b, Version) else parse_version(b)
    return _evrcmp(va, vb)


def matches(version: str | Version | None, op: str, required: str | Version) -> bool:
    """Whether a package (or provide) at ``version`` satisfies ``op required``, as the resolver decides.

    This is libsolv's ``pool_match_flags_evr`` for an ``=`` provide (every
    package provides its own name at its own version):
    - epoch and version are compared first; if they differ, ``op`` decides;
    - if they are equal and the package has a release but the requirement has
      none, only operators containing ``=`` match (``foo>=1.0`` and ``foo=1.0``
      accept ``1.0-r3``; ``foo>1.0`` and ``foo!=1.0`` do not);
    - if they are equal and the package has no release but the requirement has
      one, it matches whatever the operator (a release-less version stands for
      all its releases);
    - ``version=None`` is an unversioned provide, which satisfies every
      versioned requirement on that name (RPM semantics).
    """
    if op == "==":
        op = "="
    if op not in OPERATORS:
        raise ValueError(f"unknown version operator {op!r} (use one of {' '.join(OPERATORS)})")
    if version is None:
        return True
    va = version if isinstance(version, Version) else parse_version(version)
    vr = required if isinstance(required, Version) else parse_version(required)
    r = _epoch_cmp(va.epoch, vr.epoch) or vercmp(va.version, vr.version)
    if r == 0:
        if va.release is None and vr.release is not None:
            return True
        if va.release is not None and vr.release is not None:
            r = vercmp(va.release, vr.release)
    if r < 0:
        return op in ("<", "<=", "!=")
    if r > 0:
        return op in (">", ">=", "!=")
    return op in ("=", "<=", ">=")


@dataclass(frozen=True)
class Dependency:
    """One requirement: ``name [op version]``, with further ``| alternatives``.

    ``parse_dependency("a>=1 | b")`` gives ``Dependency("a", ">=", "1",
    alternatives=(Dependency("b"),))``: satisfied by a>=1 or, failing that, b.
    """

    name: str
    op: str | None = None
    version: str | None = None
    alternatives: tuple[Dependency, ...] = ()

    def choices(self) -> tuple[Dependency, ...]:
        """Every alternative in order, each without further alternatives."""
        if not self.alternatives:
            return (self,)
        return (Dependency(self.name, self.op, self.version), *self.alternatives)

    def matches(self, name: str, version: str | None) -> bool:
        """Whether a package or provide ``name`` at ``version`` satisfies one of the choices.

        ``version=None`` is an unversioned provide: it satisfies any version
        constraint on that name (libsolv's RPM semantics).
        """
        for choice in self.choices():
            if choice.name != name:
                continue
            if choice.op is None or choice.version is None:
                return True
            if matches(version, choice.op, choice.version):
                return True
        return False

    def __str__(self) -> str:
        return " | ".join(
            c.name if c.op is None else f"{c.name}{c.op}{c.version}" for c in self.choices()
        )


_OPS = ("!=", "<=", ">=", "==", "=", "<", ">")
_OP_RE = re.compile(r"\s*(?P<name>[^\s<>=!|]+)\s*(?P<op>[<>=!]+)\s*(?P<rest>.*?)\s*")


def _parse_term(term: str, whole: str) -> Dependency:
    m = _OP_RE.fullmatch(term)
    if m is not None:
        op = m.group("op")
        if op not in _OPS:
            raise InvalidDependency(whole, f"unknown comparison {op!r}")
        if not m.group("rest"):
            raise InvalidDependency(whole, f"the version after {op!r} is missing (e.g. "
                                           f"'{m.group('name')}{op}1.0')", syntax=False)
    m = _TERM_RE.fullmatch(term)
    if m is None or not term.strip():
        raise InvalidDependency(whole, f"cannot read {term.strip()!r}" if term.strip() else "empty")
    name = m.group("name")
    if not _NAME_RE.fullmatch(name):
        raise InvalidDependency(
            whole, f"bad package name {name!r} (letters, digits and . + _ @ - only)"
        )
    op = m.group("op")
    version = m.group("version")
    if op == "==":
        op = "="
    if op is not None:
        assert version is not None
        try:
            parse_version(version)
        except InvalidVersion as e:
            raise InvalidDependency(whole, str(e), syntax=False) from None
    return Dependency(name, op, version)


def parse_dependency(text: str) -> Dependency:
    """Parse ``name``, ``name>=1.0`` or ``a | b>=2``; raises InvalidDependency naming the input."""
    if not isinstance(text, str):
        raise InvalidDependency(repr(text), "not a string")
    terms = [_parse_term(t, text) for t in text.split("|")]
    first = terms[0]
    if len(terms) == 1:
        return first
    return Dependency(first.name, first.op, first.version, tuple(terms[1:]))
