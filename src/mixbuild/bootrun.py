"""Shared plumbing of the boot stages (initramfs, iso, qemu): where things live,
the one subprocess wrapper, and nested progress steps."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT / "artifacts"
# 2026-01-01 00:00:00 UTC, the Makefile's default too.
DEFAULT_SOURCE_DATE_EPOCH = 1767225600

_depth = 0


class BuildError(RuntimeError):
    """A boot stage failed; the message says what and what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos"))


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_SOURCE_DATE_EPOCH))


def log(msg: str) -> None:
    print("  " * _depth + msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Print TITLE, indent what happens inside, then report the elapsed time."""
    global _depth
    log(f"‣ {title}")
    start = time.monotonic()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    log(f"  done in {time.monotonic() - start:.1f} s")


def run(cmd: Sequence[str | Path], *, cwd: Path | None = None,
        env: dict[str, str] | None = None, capture: bool = False,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run CMD with stdin closed and a C locale; raise BuildError naming the exact
    command line (ready to paste) when it fails."""
    argv = [str(c) for c in cmd]
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C",
                "SOURCE_DATE_EPOCH": str(source_date_epoch())}
    if "HOME" in os.environ:
        full_env["HOME"] = os.environ["HOME"]
    full_env.update(env or {})
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                              capture_output=capture, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise BuildError(f"{argv[0]}: not found; run 'make deps' to install the build tools") from e
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"timed out after {timeout} s: {shlex.join(argv)}") from e
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-2000:] if capture else ""
        raise BuildError(f"command failed (exit {proc.returncode}): {shlex.join(argv)}"
                         + (f"\n{detail}" if detail else ""))
    return proc
