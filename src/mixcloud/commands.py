"""Commands from user-data: bootcmd (every boot, before the network), runcmd and a
"#!" user-data script (once per instance, in the final stage), packages through
mix, and power_state. Their output goes to the log."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from mixcloud.userdata import Command, PowerState

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MIX_TIMEOUT = 1800.0


def argv(cmd: Command) -> list[str]:
    """A string runs through /bin/sh -c (cloud-init's way); a list is the argv."""
    return ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


def run(args: list[str], log: Callable[[str], None], env: dict[str, str] | None = None,
        timeout: float | None = None) -> int:
    """Run ARGS with its output logged; its exit status (127 when it cannot start)."""
    full_env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=full_env, timeout=timeout, check=False, errors="replace")
    except FileNotFoundError:
        log(f"  {args[0]}: command not found")
        return 127
    except subprocess.TimeoutExpired:
        log(f"  {args[0]}: still running after {timeout:.0f} s; stopped")
        return 124
    for line in (proc.stdout + proc.stderr).splitlines():
        log(f"  | {line}")
    return proc.returncode


def run_all(cmds: tuple[Command, ...], log: Callable[[str], None], what: str,
            env: dict[str, str]) -> list[str]:
    """Run each command in order (a failing one does not stop the rest, as in
    cloud-init's runcmd script); returns the failures."""
    failures = []
    for n, cmd in enumerate(cmds):
        log(f"{what}[{n}]: {cmd if isinstance(cmd, str) else ' '.join(cmd)}")
        code = run(argv(cmd), log, env)
        if code != 0:
            failures.append(f"{what}[{n}] exited {code}")
    return failures


def run_script(text: str, log: Callable[[str], None], env: dict[str, str]) -> int:
    """A "#!" user-data: written to a private file and executed."""
    with tempfile.TemporaryDirectory(prefix="mixos-cloud-") as d:
        path = Path(d) / "user-data-script"
        path.write_text(text)
        os.chmod(path, 0o700)
        return run([str(path)], log, env)


def packages(names: tuple[str, ...], update: bool, upgrade: bool,
             log: Callable[[str], None]) -> None:
    """mix update (always before installing: the index may be old or missing),
    mix upgrade when asked, mix install NAMES. Raises on the first failure."""
    steps = []
    if update or upgrade or names:
        steps.append(["mix", "update"])
    if upgrade:
        steps.append(["mix", "-y", "upgrade"])
    if names:
        steps.append(["mix", "-y", "install", *names])
    for step in steps:
        log(" ".join(step))
        code = run(step, log, timeout=MIX_TIMEOUT)
        if code != 0:
            raise RuntimeError(f"'{' '.join(step)}' exited {code} (its output is in the log)")


def power(state: PowerState, log: Callable[[str], None]) -> None:
    """Power off, reboot or halt after the delay, in a detached process so that
    this stage can finish and record its status first."""
    cmd = {"poweroff": "poweroff", "reboot": "reboot", "halt": "halt"}[state.mode]
    log(f"power_state: {state.mode} in {state.delay_s} s" +
        (f" ({state.message})" if state.message else ""))
    script = f"sleep {max(state.delay_s, 1)}; {cmd}"
    subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, env={"PATH": PATH})
