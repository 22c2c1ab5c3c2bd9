"""The mixos-hardening recipe parses, its scripts are valid BusyBox sh, and its init
scripts sit at the right places in mixos-init's boot order: after the file systems
are mounted, AppArmor and the firewall before the network and the SSH server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from security_policy import PROJECT

from mixbuild.packages.recipe import parse_recipe

RECIPE_DIR = PROJECT / "packages" / "mixos-hardening"
INIT_D = RECIPE_DIR / "files" / "init.d"
MIXOS_INIT_D = PROJECT / "packages" / "mixos-init" / "files" / "etc" / "init.d"


def test_recipe_parses_and_every_copied_file_exists() -> None:
    recipe = parse_recipe(RECIPE_DIR / "recipe.toml")
    assert recipe.name == "mixos-hardening"
    for copy in recipe.copy:
        src = copy.src.replace("{repo}", str(PROJECT))
        path = Path(src) if src.startswith("/") else RECIPE_DIR / src
        assert path.exists(), f"recipe copies {copy.src}, which does not exist"
    assert "etc/init.d/**" in recipe.keep


def test_scripts_are_valid_busybox_sh() -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (make deps installs busybox-static)")
    scripts = [p for p in (RECIPE_DIR / "files").rglob("*")
               if p.is_file() and p.read_bytes().startswith(b"#!/bin/sh")]
    assert len(scripts) >= 9
    for script in scripts:
        result = subprocess.run([busybox, "sh", "-n", str(script)], capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def order(name: str) -> int:
    return int(name[1:3])


def test_boot_order_against_mixos_init() -> None:
    ours = {p.name[3:]: order(p.name) for p in INIT_D.glob("S[0-9][0-9]*")}
    assert set(ours) == {"hardening", "audit", "apparmor", "firewall", "logrotate"}
    # S00-S19 run before the login prompt, S20+ in order in the background (rcS):
    # audit first among the latter, so that the AppArmor loads and the firewall's
    # table changes are recorded.
    assert ours["hardening"] < 20 <= ours["audit"] < ours["apparmor"] < ours["firewall"]
    if not MIXOS_INIT_D.is_dir():
        pytest.skip("packages/mixos-init is not in this checkout")
    theirs = {p.name[3:]: order(p.name) for p in MIXOS_INIT_D.glob("S[0-9][0-9]*")}
    assert ours["hardening"] > theirs.get("mountfs", -1)
    for service in ("instance", "network", "sshd", "services"):
        if service in theirs:
            assert ours["apparmor"] < theirs[service], f"AppArmor loads after {service}"
            assert ours["firewall"] < theirs[service], f"firewall loads after {service}"
            assert theirs[service] >= 20, f"{service} is not among the ordered services"
    if "syslog" in theirs:
        assert ours["logrotate"] > theirs["syslog"]
    if "supervise" in theirs:  # syslogd starts with the supervisor (docs/services.md)
        assert ours["logrotate"] > theirs["supervise"]
    clash = set(ours.values()) & set(theirs.values())
    assert not clash, f"same sequence number as a mixos-init script: {clash}"
