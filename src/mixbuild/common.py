"""Shared plumbing of the build stages: where things live, the one subprocess
wrapper, nested progress steps, and content hashing and locks for the cache."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT / "artifacts"
PACKAGES_DIR = PROJECT / "packages"
# 2026-01-01 00:00:00 UTC, the Makefile's default too.
DEFAULT_SOURCE_DATE_EPOCH = 1767225600

_depth = 0


class BuildError(RuntimeError):
    """A build stage failed; the message says what and what to do."""


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
        timeout: float | None = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run CMD with stdin closed (or fed INPUT), a C locale and a clean environment; raise
    BuildError naming the exact command line (ready to paste) when it fails."""
    argv = [str(c) for c in cmd]
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C",
                "SOURCE_DATE_EPOCH": str(source_date_epoch())}
    if "HOME" in os.environ:
        full_env["HOME"] = os.environ["HOME"]
    full_env.update(env or {})
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env,
                              stdin=subprocess.DEVNULL if input is None else None, input=input,
                              capture_output=capture, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise BuildError(f"{argv[0]}: not found; run 'make deps' to install the build tools") from e
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"timed out after {timeout} s: {shlex.join(argv)}") from e
    if proc.returncode != 0:
        detail = ((proc.stderr or "") + (proc.stdout or "")).strip()[-2000:] if capture else ""
        raise BuildError(f"command failed (exit {proc.returncode}): {shlex.join(argv)}"
                         + (f"\n{detail}" if detail else ""))
    return proc


def hash_tree(h: hashlib._Hash, path: Path, *, ignore: Iterable[str] = ("__pycache__",)) -> None:
    """Feed PATH (a file, symlink or directory, recursively, in sorted order) into H:
    relative names, modes, symlink targets and file contents."""
    skip = set(ignore)
    if path.is_symlink() or path.is_file():
        items = [path]
        base = path.parent
    else:
        items = sorted(p for p in path.rglob("*") if not (skip & set(p.relative_to(path).parts)))
        base = path
    for p in items:
        rel = p.relative_to(base).as_posix()
        st = p.lstat()
        h.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode() + b"\0")
        elif p.is_file():
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\1")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Serialize builds that share $MIXOS_CACHE (several checkouts may build at once)."""
    path = cache_dir() / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build holding {path}")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def unpack_once(root: Path, extract: Callable[[Path], None]) -> Path:
    """ROOT, filled by EXTRACT(tmp) the first time and kept after that.

    EXTRACT writes into a temporary directory beside ROOT, which is renamed into
    place only once complete, so an interrupted build never leaves half a tree;
    when two builds race, the first rename wins and the other's copy is dropped.
    """
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    extract(tmp)
    (tmp / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:  # another build unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root
