"""mixos-service: list, inspect, start, stop and enable the supervised services.

    mixos-service list
    mixos-service status|start|stop|restart|reload NAME
    mixos-service enable|disable NAME [--now]
    mixos-service logs NAME [-n LINES] [-f]

Exit status: 0 done, 1 the action failed (the message says why), 2 bad usage or an
unknown service. docs/services.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mixadmin import firewall, runit, services
from mixadmin.services import Definition, ServiceError

SUPERVISE = "/usr/lib/mixos/supervise"
START_WAIT = 3.0  # seconds a started service must stay up to count as started


class Failed(Exception):
    """The action was tried and did not work (exit 1)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mixos-service", description=(
        "Supervised MixOS services (runit): list them, see one's state and log, start, "
        "stop, restart or reload it, enable or disable it at boot."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="every service: enabled, state, pid, uptime, restarts")
    for cmd, text in (("status", "state and last log lines"), ("start", "start now"),
                      ("stop", "stop now"), ("restart", "stop and start"),
                      ("reload", "send the reload signal (conf reload=, default HUP)")):
        sub.add_parser(cmd, help=text).add_argument("name")
    for cmd, text in (("enable", "start at every boot (--now: and now)"),
                      ("disable", "do not start at boot (--now: and stop now)")):
        q = sub.add_parser(cmd, help=text)
        q.add_argument("name")
        q.add_argument("--now", action="store_true")
    q = sub.add_parser("logs", help="the service's log (/var/log/sv/NAME)")
    q.add_argument("name")
    q.add_argument("-n", "--lines", type=int, default=50)
    q.add_argument("-f", "--follow", action="store_true")
    args = p.parse_args(list(argv))
    if getattr(args, "lines", 1) < 0:
        p.error("--lines must be 0 or more")
    return args


def is_enabled(name: str) -> bool:
    return (services.ENABLED / name).is_symlink()


def ports_message(d: Definition) -> list[str]:
    """For each declared port the firewall keeps closed: the one command that opens it."""
    closed = [p for p in d.ports if not firewall.is_open(p)]
    return [f"{d.name} listens on {p}, which the firewall keeps closed; open it with: "
            f"mixos-firewall allow {p}" for p in closed]


def _supervise(*args: str) -> None:
    proc = subprocess.run([SUPERVISE, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise Failed(proc.stderr.strip() or f"{SUPERVISE} {' '.join(args)} failed")


def _sv(*args: str) -> None:
    subprocess.run(["sv", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def _end_backoff(svdir: Path) -> None:
    """A service in its back-off wait (state finish) starts again at once."""
    st = runit.read_status(svdir)
    if st.state == "finish" and st.pid:
        try:
            os.kill(st.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def start(d: Definition) -> str:
    svdir = services.SCAN / d.name
    _supervise("prepare", d.name)
    (svdir / "fails").unlink(missing_ok=True)
    _end_backoff(svdir)
    _supervise("up", d.name)
    deadline = time.monotonic() + START_WAIT
    st = runit.read_status(svdir)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        st = runit.read_status(svdir)
        if st.state != "run" and st.restarts:
            break
    if st.state == "run" and time.time() - st.since >= 1:
        return f"{d.name}: running (pid {st.pid})"
    why = f" ({st.last_exit})" if st.last_exit else ""
    raise Failed(f"{d.name} does not stay up{why}; runit keeps retrying it with a back-off. "
                 f"'mixos-service logs {d.name}' shows what it said")


def stop(d: Definition) -> str:
    svdir = services.SCAN / d.name
    if not runit.read_status(svdir).supervised:
        return f"{d.name}: not running"
    _sv("-w", "10", "down", str(svdir))
    _end_backoff(svdir)
    if not is_enabled(d.name):
        # Not wanted at boot either: supervision ends too. Renamed first (runsvdir
        # skips dot names, so it does not start a new runsv for it), then runsv exits.
        gone = services.SCAN / f".{d.name}.gone"
        subprocess.run(["rm", "-rf", str(gone)], check=False)
        svdir.rename(gone)
        _sv("-w", "10", "exit", str(gone))
        if (gone / "log").is_dir():
            _sv("-w", "10", "exit", str(gone / "log"))
        subprocess.run(["rm", "-rf", str(gone)], check=False)
        return f"{d.name}: stopped"
    st = runit.read_status(svdir)
    if st.state == "run":
        raise Failed(f"{d.name} did not stop within 10 s (pid {st.pid})")
    return f"{d.name}: stopped"


def status_text(d: Definition, st: runit.Status, now: float) -> list[str]:
    enabled = d.started_by or ("enabled" if is_enabled(d.name) else "disabled")
    state = st.label(now)
    lines = [f"{d.name}: {state}" + (f" - {d.description}" if d.description else "")]
    if st.supervised and st.state == "run":
        lines.append(f"  pid {st.pid}, up {runit.human_duration(now - st.since)}")
    lines.append(f"  at boot: {enabled}")
    lines.append(f"  restarts: {st.restarts}" + (f", quick exits in a row: {st.fails}"
                                                 if st.fails else ""))
    if st.last_exit:
        lines.append(f"  last exit: {st.last_exit}")
    if d.ports:
        lines.append("  ports: " + ", ".join(
            f"{p} ({'open' if firewall.is_open(p) else 'closed by the firewall'})"
            for p in d.ports))
    lines.append(f"  log: {services.LOGS / d.name / 'current'}")
    return lines


def log_lines(name: str, count: int) -> list[str]:
    logdir = services.LOGS / name
    files = sorted(logdir.glob("@*.[su]")) + [logdir / "current"]
    lines: list[str] = []
    for f in files:
        try:
            lines.extend(f.read_text(errors="replace").splitlines())
        except OSError:
            continue
    return lines[-count:] if count else []


def list_table(now: float) -> list[str]:
    rows = [("SERVICE", "AT BOOT", "STATE", "PID", "UPTIME", "RESTARTS")]
    for name in services.names():
        try:
            d = services.load(name)
        except ServiceError as e:
            rows.append((name, "?", f"bad definition: {e}", "-", "-", "-"))
            continue
        st = runit.read_status(services.SCAN / name)
        running = st.supervised and st.state == "run"
        rows.append((name, "by " + d.started_by.rsplit("/", 1)[-1] if d.started_by else
                     "enabled" if is_enabled(name) else "disabled",
                     st.label(now), str(st.pid) if running else "-",
                     runit.human_duration(now - st.since) if running else "-",
                     str(st.restarts)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def run(args: argparse.Namespace) -> list[str]:
    now = time.time()
    if args.command == "list":
        return list_table(now)
    d = services.load(args.name)
    if args.command == "logs":
        if args.follow:
            os.execvp("tail", ["tail", "-n", str(args.lines), "-f",
                               str(services.LOGS / d.name / "current")])
        return log_lines(d.name, args.lines)
    if args.command == "status":
        st = runit.read_status(services.SCAN / d.name)
        tail = log_lines(d.name, 10)
        return status_text(d, st, now) + (["", *tail] if tail else [])
    if os.geteuid() != 0:
        raise Failed(f"mixos-service {args.command} changes the system: run it as root "
                     "(doas mixos-service ...)")
    if args.command in ("enable", "disable") and d.started_by:
        raise Failed(f"{d.name} is started by {d.started_by}, not enabled on its own "
                     "(docs/services.md)")
    if args.command == "start":
        return [start(d), *ports_message(d)]
    if args.command == "stop":
        return [stop(d)]
    if args.command == "restart":
        if not runit.read_status(services.SCAN / d.name).supervised:
            return [start(d)]
        (services.SCAN / d.name / "fails").unlink(missing_ok=True)
        _sv("-w", "10", "restart", str(services.SCAN / d.name))
        _end_backoff(services.SCAN / d.name)
        return [start(d)]
    if args.command == "reload":
        st = runit.read_status(services.SCAN / d.name)
        if not (st.supervised and st.state == "run"):
            raise Failed(f"{d.name} is not running; nothing to reload")
        _sv(services.RELOAD_SIGNALS[d.reload], str(services.SCAN / d.name))
        return [f"{d.name}: sent {d.reload} (pid {st.pid})"]
    link = services.ENABLED / d.name
    if args.command == "enable":
        out = []
        if not link.is_symlink():
            services.ENABLED.mkdir(parents=True, exist_ok=True)
            link.symlink_to(services.DEFS / d.name)
        out.append(f"{d.name}: enabled at boot")
        if args.now:
            out.append(start(d))
        else:
            out.append(f"start it now with: mixos-service start {d.name}")
        return out + ports_message(d)
    # disable
    link.unlink(missing_ok=True)
    out = [f"{d.name}: disabled at boot"]
    if args.now:
        out.append(stop(d))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for line in run(args):
            print(line)
    except ServiceError as e:
        print(f"mixos-service: {e}", file=sys.stderr)
        return 2
    except (Failed, OSError) as e:
        print(f"mixos-service: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
