"""Services a package ships, and what mix does about them (docs/services.md).

A package ships a service as /etc/sv/NAME/run, with an optional conf. mix:
- on a first install (never on an upgrade: the admin's choice stands), enables the
  service only if its conf says enable=yes (the symlink /etc/service/NAME), starting
  it too on the running system; otherwise it stays disabled, and mix says the one
  command that enables it;
- before a package is removed, stops its services on the running system and removes
  their enable links, so no supervised directory is left pointing at missing files.

"On the running system" means the root is / and its supervisor runs (/run/service);
with --root on another tree, only the links change.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

SERVICE_RUN = re.compile(r"/etc/sv/([a-z0-9][a-z0-9._-]*)/run")
MIXOS_SERVICE = "/usr/sbin/mixos-service"
TIME_LIMIT = 60


def names(paths: Iterable[str]) -> list[str]:
    """The services among a package's file paths."""
    return sorted({m.group(1) for p in paths if (m := SERVICE_RUN.fullmatch(p))})


def conf(root: Path, name: str) -> dict[str, str]:
    """KEY=VALUE lines of ROOT/etc/sv/NAME/conf (quotes removed)."""
    values: dict[str, str] = {}
    try:
        text = (root / "etc/sv" / name / "conf").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


def _live(root: Path) -> bool:
    return str(root.absolute()) == "/" and Path("/run/service").is_dir() and \
        os.access(MIXOS_SERVICE, os.X_OK)


def _mixos_service(*args: str) -> str:
    try:
        proc = subprocess.run([MIXOS_SERVICE, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIME_LIMIT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mixos-service {' '.join(args)} failed: {e}"
    return (proc.stdout + proc.stderr).strip()


def installed(root: Path, name: str) -> str:
    """After a first install: enable if the package says so; what to tell the admin."""
    values = conf(root, name)
    ports = values.get("ports", "").split()
    if values.get("started_by"):
        return f"service {name} installed; {values['started_by']} starts it"
    if values.get("enable") == "yes":
        link = root / "etc/service" / name
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"/etc/sv/{name}")
        said = f"service {name} installed and enabled at boot"
        if _live(root):
            said += "\n" + _mixos_service("start", name)
        return said
    said = (f"service {name} installed, disabled; start it now and at every boot with: "
            f"mixos-service enable --now {name}")
    if ports:
        said += (f"\nit listens on {', '.join(ports)}, which the firewall keeps closed; "
                 + "; ".join(f"mixos-firewall allow {p}" for p in ports) + " opens it")
    return said


def removing(root: Path, name: str) -> str:
    """Before the package's files go: the enable link goes, the service stops."""
    link = root / "etc/service" / name
    enabled = link.is_symlink()
    if enabled:
        link.unlink()
    said = f"service {name} disabled" if enabled else ""
    if _live(root) and Path("/run/service", name).is_dir():
        said = (said + "\n" if said else "") + _mixos_service("stop", name)
    return said
