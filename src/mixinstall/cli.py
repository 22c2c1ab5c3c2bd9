"""mixos-install: install MixOS onto a disk, unattended, from an install.yaml.

    mixos-install --config /path/install.yaml
    mixos-install --config https://example.org/install.yaml --dry-run

The file is validated before any disk is touched (docs/install-yaml.md);
--dry-run prints the plan (disk, partitions, packages) and writes nothing.
Progress goes to the console; the whole log ends up in the installed system at
/var/log/mixos-install.log (and at /run/mixos-install.log on failure).

Exit status: 0 installed (or the dry run's plan printed), 1 the installation
failed (the message says which step and why), 2 install.yaml is invalid or the
command line is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mixinstall import config as configmod
from mixinstall import install
from mixinstall.steps import InstallError, Progress

FAILURE_LOG = Path("/run/mixos-install.log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixos-install", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="FILE|URL",
                        help="install.yaml: a path or an http(s):// or file:// URL")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything and print the plan; write nothing")
    parser.add_argument("--target", type=Path, default=Path("/mnt/mixos-target"),
                        help="where the new root is mounted while installing")
    parser.add_argument("--repo", action="append", default=[], metavar="URL",
                        help="install from this repository instead of the boot medium's "
                             "(repeatable; install.yaml's repositories are used too)")
    parser.add_argument("--json", action="store_true", help="--dry-run: the plan as JSON")
    parser.add_argument("--unattended", action="store_true",
                        help="after a successful installation, do install.yaml's finish: "
                             "(reboot, poweroff or none)")
    args = parser.parse_args(argv)
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as e:
        print(f"mixos-install: {e}", file=sys.stderr)
        return 2
    progress = Progress()
    try:
        if args.dry_run:
            res = install.check(config, progress)
            assert res.plan is not None
            sources = install.default_sources(config, tuple(args.repo))
            packages = install.packages_for(config, res.plan)
            if args.json:
                print(json.dumps({
                    "disk": res.device, "disk_mib": res.plan.disk_mib,
                    "partitions": [{"number": p.number, "name": p.name,
                                    "start_mib": p.start_mib, "size_mib": p.size_mib}
                                   for p in res.plan.partitions],
                    "packages": packages, "repositories": list(sources.repos),
                    "config": config.json()}, indent=2))
                return 0
            print(f"dry run: would install MixOS onto {res.device} ({res.plan.disk_mib} MiB)")
            print("  partitions: " + "; ".join(f"{p.number} {p.name} {p.size_mib} MiB"
                                               for p in res.plan.partitions))
            print(f"  packages: {' '.join(packages)}")
            print(f"  from: {' '.join(sources.repos) or '(no repository!)'}")
            print(f"  host name {config.hostname}, network {config.network.mode}, "
                  f"users: {', '.join(u.name for u in config.users) or 'none'}; "
                  f"then {config.finish}")
            return 0
        sources = install.default_sources(config, tuple(args.repo))
        install.install(config, args.target, progress, sources=sources)
    except (InstallError, OSError, ValueError) as e:
        progress.log(f"FAILED: {e}")
        try:
            progress.save(FAILURE_LOG)
            print(f"mixos-install: the log is in {FAILURE_LOG}", file=sys.stderr)
        except OSError:
            pass
        return 1
    print(f"mixos-install: done; then: {config.finish}", file=sys.stderr)
    if args.unattended and config.finish in ("reboot", "poweroff"):
        os.execvp(config.finish, [config.finish])
    return 0


if __name__ == "__main__":
    sys.exit(main())
