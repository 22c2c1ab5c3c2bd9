"""Progress and commands: every step of an installation is printed on the console
with its elapsed time and written to the installation's log; every command goes
through run(), which logs it and, when it fails, raises InstallError with the
exact command line (ready to paste) and its last output."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class InstallError(RuntimeError):
    """A step of the installation failed; the message says what and what to do."""


class Progress:
    """Nested steps on the console (stderr) and in a log file."""

    def __init__(self, out: TextIO = sys.stderr, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.lines: list[str] = []  # the whole log, kept until the target exists
        self._depth = 0
        self.started = time.monotonic()

    def log(self, msg: str, *, console: bool = True) -> None:
        stamp = f"{time.monotonic() - self.started:7.2f}"
        for line in msg.splitlines() or [""]:
            self.lines.append(f"{stamp} {'  ' * self._depth}{line}")
        if console and not self.quiet:
            print("mixos-install: " + "  " * self._depth + msg, file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.log(f"{title} ...")
        start = time.monotonic()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        self.log(f"{title}: done in {time.monotonic() - start:.1f} s")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        os.chmod(path, 0o600)

    def run(self, cmd: Sequence[str | Path], *, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 600) -> str:
        argv = [str(c) for c in cmd]
        self.log(f"$ {shlex.join(argv)}", console=False)
        full_env = {"PATH": ENV_PATH, "LC_ALL": "C", **(env or {})}
        try:
            proc = subprocess.run(argv, input=input, env=full_env, capture_output=True,
                                  text=True, timeout=timeout, check=False,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise InstallError(f"{argv[0]}: not found; is the package that provides it "
                               "installed? (the installer needs mixos-installer's "
                               "dependencies)") from None
        except subprocess.TimeoutExpired:
            raise InstallError(f"timed out after {timeout:.0f} s: {shlex.join(argv)}") from None
        output = (proc.stdout + proc.stderr).strip()
        if output:
            self.log(output, console=False)
        if proc.returncode != 0:
            raise InstallError(f"command failed (exit {proc.returncode}): {shlex.join(argv)}"
                               + (f"\n{output[-2000:]}" if output else ""))
        return proc.stdout
