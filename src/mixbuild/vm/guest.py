"""A running QEMU guest: its serial console captured to a file and searchable
while it grows, bounded waits that fail with the console's last lines, and a
clean stop.

    with VM(Machine(iso=iso, ssh_port=port), Path("console.log")) as vm:
        vm.wait_for("login:", timeout=60)
        print(vm.elapsed())            # seconds since QEMU was started
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from mixbuild.vm.qemu import Machine, command

TAIL_LINES = 50
# What the kernel prints last when it powers the machine off (at any log level);
# on a machine it cannot power off (no ACPI), it halts instead.
POWER_DOWN = r"reboot: (Power down|System halted)"


class VMError(RuntimeError):
    """A wait on the guest timed out, or QEMU exited unexpectedly."""


class VM:
    def __init__(self, machine: Machine, console_log: Path) -> None:
        self.machine = machine
        self.console_log = console_log
        self.argv = command(machine)
        self._buf = bytearray()
        self._arrivals: list[tuple[int, float]] = []  # (end offset of a chunk, elapsed s)
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr_path = console_log.with_suffix(console_log.suffix + ".qemu-stderr")
        self.started_at = 0.0

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> Self:
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        with self._stderr_path.open("wb") as err:
            self.started_at = time.monotonic()
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err,
                                          start_new_session=True)
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()
        return self

    def _read_console(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with self.console_log.open("ab") as out:
            while True:
                chunk = os.read(fd, 65536)
                with self._cond:
                    if chunk:
                        self._buf += chunk
                        self._arrivals.append((len(self._buf), self.elapsed()))
                    self._cond.notify_all()
                if not chunk:
                    return
                out.write(chunk)
                out.flush()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """Stop QEMU now (the guest is not asked)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._proc.stdin is not None:
            self._proc.stdin.close()

    def wait_exit(self, timeout: float) -> int:
        """Wait up to TIMEOUT seconds for QEMU to exit on its own (guest powered off).
        A machine without a power-off device (microvm, run without ACPI) stays on
        after the guest's kernel has halted ("reboot: System halted" on the
        console): QEMU is then ended here, and the guest counts as powered off (0)."""
        assert self._proc is not None

        def stuck() -> VMError:
            return VMError(self._explain(f"QEMU still running {timeout:.0f} s after poweroff"))
        powered_down = False
        if self.machine.mmio:
            try:
                self.wait_for(POWER_DOWN, timeout)
                powered_down = True
            except VMError:
                if self._proc.poll() is None:
                    raise stuck() from None
        try:
            code = self._proc.wait(timeout=1 if powered_down else timeout)
        except subprocess.TimeoutExpired:
            if not powered_down:
                raise stuck() from None
            self._proc.terminate()
            self._proc.wait(timeout=10)
            code = 0
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    # -- console ------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def console(self) -> str:
        with self._cond:
            return self._buf.decode("utf-8", errors="replace")

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.console().replace("\r", "").splitlines()[-lines:])

    def qemu_stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def _explain(self, what: str) -> str:
        err = self.qemu_stderr()
        return (f"{what}\n--- last {TAIL_LINES} console lines ({self.console_log}) ---\n"
                f"{self.tail()}" + (f"\n--- QEMU stderr ---\n{err}" if err else "")
                + f"\n--- QEMU command ---\n{' '.join(self.argv)}")

    def wait_for(self, pattern: str, timeout: float, *, since: int = 0) -> re.Match[str]:
        """Wait up to TIMEOUT s for regex PATTERN in the console (from byte offset SINCE).
        Raises VMError with the console's last lines on timeout or if QEMU exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = self._buf[since:].decode("utf-8", errors="replace")
                match = regex.search(text)
                if match:
                    return match
                if self._proc is None or self._proc.poll() is not None and \
                        (self._reader is None or not self._reader.is_alive()):
                    raise VMError(self._explain(
                        f"QEMU exited while waiting for {pattern!r}"))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VMError(self._explain(
                        f"timed out after {timeout:.0f} s waiting for {pattern!r} on the console"))
                self._cond.wait(min(left, 0.5))

    def arrival_of(self, pattern: str) -> float | None:
        """Seconds after QEMU's start at which the first match of regex PATTERN
        had fully arrived on the console, or None if it has not."""
        with self._cond:
            match = re.search(pattern.encode(), bytes(self._buf))
            if match is None:
                return None
            return next(t for end, t in self._arrivals if end >= match.end())

    def mark(self) -> int:
        """The console's current length, for wait_for(since=...)."""
        with self._cond:
            return len(self._buf)

    def sendkey(self, key: str, timeout: float = 10) -> None:
        """Press KEY (QEMU's key names: "esc", "down", "ret", "shift-a", ...) on the
        emulated keyboard, through the monitor socket (Machine.monitor)."""
        self.hmp(f"sendkey {key}", timeout)

    def hmp(self, command: str, timeout: float = 10) -> str:
        """Run one command of QEMU's human monitor (Machine.monitor: "sendkey esc",
        "savevm NAME", "loadvm NAME") and return what it printed."""
        if self.machine.monitor is None:
            raise VMError(f"this VM has no monitor socket (Machine.monitor) for {command!r}")
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mon:
            mon.settimeout(timeout)
            while True:
                try:
                    mon.connect(str(self.machine.monitor))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline or not self.running:
                        raise VMError(self._explain(
                            f"QEMU's monitor {self.machine.monitor} did not accept a connection"))
                    time.sleep(0.05)
            self._read_until(mon, b"(qemu) ", deadline)
            mon.sendall(f"{command}\n".encode())
            out = self._read_until(mon, b"(qemu) ", deadline)
        # the monitor echoes the command line (with terminal escapes) before its answer
        answer = out.rsplit(b"(qemu) ", 1)[0].decode(errors="replace").replace("\r", "")
        return answer.split("\n", 1)[1] if "\n" in answer else ""

    def qmp(self, execute: str, timeout: float = 10, **arguments: object) -> dict[str, object]:
        """Run one QMP command (Machine.qmp's socket) and return its reply's "return";
        an error reply raises VMError."""
        import json

        if self.machine.qmp is None:
            raise VMError("this VM has no QMP socket (Machine.qmp)")
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.machine.qmp))
            reader = sock.makefile("rb")

            def reply() -> dict[str, object]:
                while time.monotonic() < deadline:
                    msg = json.loads(reader.readline() or b"{}")
                    if not msg:
                        raise VMError("QEMU closed its QMP socket")
                    if "return" in msg or "error" in msg:
                        return dict(msg)
                raise VMError(f"no QMP reply to {execute} within {timeout} s")

            json.loads(reader.readline())  # the greeting
            sock.sendall(b'{"execute": "qmp_capabilities"}\n')
            reply()
            sock.sendall(json.dumps({"execute": execute, "arguments": arguments}).encode() + b"\n")
            answer = reply()
        if "error" in answer:
            raise VMError(f"QMP {execute} {arguments}: {answer['error']}")
        result = answer.get("return")
        return dict(result) if isinstance(result, dict) else {}

    @staticmethod
    def _read_until(sock: socket.socket, marker: bytes, deadline: float) -> bytes:
        """Read up to the first MARKER; return what was read."""
        seen = b""
        while marker not in seen:
            if time.monotonic() > deadline:
                raise VMError(f"QEMU's monitor did not answer (waiting for {marker!r})")
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                raise VMError("QEMU's monitor closed the connection")
            seen += chunk
        return seen

    def open_boot_menu(self, timeout: float = 60) -> None:
        """Bring up the ISO's hidden GRUB menu: press Esc on the keyboard every
        0.2 s from power-on until the menu is drawn (GRUB boots the default entry
        at once unless a key is waiting when it starts)."""
        self._press_until("GNU GRUB", lambda: self.sendkey("esc"), timeout, "the GRUB menu")

    def open_console_menu(self, timeout: float = 90) -> None:
        """Bring up the initramfs's boot menu (initramfs/init, console_menu): press
        Esc on the serial console every 0.2 s until it is shown."""
        self._press_until("boot menu (a key was pressed", lambda: self.type("\x1b"), timeout,
                          "the console boot menu")

    def _press_until(self, marker: str, press: Callable[[], None], timeout: float,
                     what: str) -> None:
        """PRESS every 0.2 s until MARKER is on the console."""
        deadline = time.monotonic() + timeout
        while marker not in self.console():
            if time.monotonic() > deadline or not self.running:
                raise VMError(self._explain(f"{what} did not open within {timeout:.0f} s "
                                            "of pressing Esc"))
            press()
            time.sleep(0.2)

    def type(self, text: str) -> None:
        """Type TEXT on the serial console."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode())
        self._proc.stdin.flush()
