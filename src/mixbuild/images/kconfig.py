"""Kconfig files: read a kernel .config and config fragments, and say which requests a .config misses.

A fragment line is either `CONFIG_FOO=value` (FOO must have exactly that value) or
`# CONFIG_FOO is not set` (FOO must be off). Kconfig silently drops a request whose
dependencies are not met, so after every merge the build compares the result with what
the fragments asked for and refuses to go on when anything is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")

# A request: the value a symbol must have, or None when it must be off.
Requests = dict[str, str | None]


def parse_config(text: str) -> dict[str, str]:
    """The symbols a .config sets, with their values as written (strings keep their quotes)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _SET.match(line.strip())
        if match:
            values[match[1]] = match[2]
    return values


def parse_fragment(text: str, origin: str = "<fragment>") -> Requests:
    """What a fragment asks for; a symbol asked for twice in one fragment is an error."""
    requests: Requests = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if (match := _SET.match(line)) is not None:
            symbol, value = match[1], match[2]
        elif (match := _UNSET.match(line)) is not None:
            symbol, value = match[1], None
        elif line.startswith("#"):
            continue
        else:
            raise ValueError(f"{origin}:{number}: not a Kconfig line: {raw!r}")
        if symbol in requests and requests[symbol] != value:
            raise ValueError(f"{origin}:{number}: {symbol} is asked for twice, differently")
        requests[symbol] = value
    return requests


def read_fragments(paths: Iterable[Path]) -> dict[str, Requests]:
    """Requests per fragment file name, in the given order."""
    return {path.name: parse_fragment(path.read_text(), str(path)) for path in paths}


def merged_requests(fragments: Mapping[str, Requests]) -> dict[str, tuple[str | None, str]]:
    """symbol -> (requested value, fragment that asked); a later fragment overrides an earlier one."""
    merged: dict[str, tuple[str | None, str]] = {}
    for name, requests in fragments.items():
        for symbol, value in requests.items():
            merged[symbol] = (value, name)
    return merged


@dataclass(frozen=True)
class Mismatch:
    """A request the .config does not honour."""

    symbol: str
    wanted: str | None
    actual: str | None
    origin: str

    def __str__(self) -> str:
        wanted = "not set" if self.wanted is None else self.wanted
        actual = "not set" if self.actual is None else self.actual
        return f"{self.symbol}: wanted {wanted}, got {actual} (asked by {self.origin})"


def mismatches(
    requests: Mapping[str, tuple[str | None, str]], config: Mapping[str, str]
) -> list[Mismatch]:
    """Every request the .config does not honour, sorted by symbol."""
    found = []
    for symbol, (wanted, origin) in sorted(requests.items()):
        actual = config.get(symbol)
        if wanted is None and actual is None:
            continue
        if wanted != actual:
            found.append(Mismatch(symbol, wanted, actual, origin))
    return found
