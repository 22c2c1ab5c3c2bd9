"""mixos-cloud: apply a cloud-init seed at boot, and say how it went.

  mixos-cloud local         the local stage (/etc/init.d/S25cloud)
  mixos-cloud final         the final stage (/etc/init.d/S92cloud-final)
  mixos-cloud status [--wait] [--json]
                            done, running, failed (with the failing steps) or
                            disabled

Exit status of `status`: 0 done (or disabled: nothing to read at boot), 1 failed,
2 running (or not started yet).
The stages exit 0 even when a step failed: the boot goes on; the status tells.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mixcloud import state


def _status(args: argparse.Namespace) -> int:
    root = Path(args.root)
    deadline = time.monotonic() + args.wait
    while True:
        st = state.read_status(root)
        current = st.get("status") if st else None
        done = current in (state.DONE, state.FAILED, state.DISABLED)
        if done or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if args.json:
        print(json.dumps(st or {"status": "not started"}, indent=1))
    elif st is None:
        print("status: not started (mixos-cloud has not run in this boot)")
    else:
        print(f"status: {current}" + (f" ({st['reason']})" if st.get("reason") else ""))
        if st.get("datasource"):
            print(f"datasource: {st['datasource']}")
        if st.get("instance_id"):
            print(f"instance: {st['instance_id']}")
        failures = st.get("failures") or []
        assert isinstance(failures, list)
        for f in failures:
            print(f"failed: {f['stage']} stage, step {f['step']}: {f['error']}")
        print(f"log: /{state.LOG}")
    return {state.DONE: 0, state.DISABLED: 0, state.FAILED: 1}.get(str(current), 2)


def _stage(name: str, root: Path) -> int:
    from mixcloud import stages
    cmdline = Path("/proc/cmdline").read_text()
    stage = stages.local if name == "local" else stages.final
    try:
        stage(root, cmdline, stages.Machine())
    except Exception as e:  # noqa: BLE001 - the boot goes on; say what broke
        print(f"cloud: mixos-cloud {name} failed: {e}", file=sys.stderr)
        run = state.Run(root, name)
        run.fail("mixos-cloud", str(e))
        run.write_status(state.FAILED)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in in (["local"], ["final"]):
        # The boot's own calls skip argparse: 0.2 s under emulation (TCG).
        return _stage(args_in[0], Path("/"))
    parser = argparse.ArgumentParser(prog="mixos-cloud",
                                     description="Apply a cloud-init seed (docs/boot.md).")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("local", help="the local stage (before the network)")
    sub.add_parser("final", help="the final stage (after the network)")
    st = sub.add_parser("status", help="done, running or failed")
    st.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to SECONDS for the stages to finish")
    st.add_argument("--json", action="store_true")
    args = parser.parse_args(args_in)
    if args.command == "status":
        return _status(args)
    return _stage(args.command, Path(args.root))
