"""The daemons of the package collection (docs/packages.md, "Services"): each recipe
ships a service in the docs/services.md format, installed disabled, runs its daemon as
its own user, and ships an AppArmor profile that compiles with Debian's apparmor_parser
(the one the image loads it with) against mixos-hardening's tunables, in enforce mode,
attached to the daemon's binary, without blanket rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from security_debian import unpacked
from security_policy import SECURITY

from mixbuild.common import PACKAGES_DIR
from mixbuild.packages.recipe import load_recipes

# recipe -> (profile name, the file it attaches to, the user its daemon runs as)
DAEMONS = {
    "haproxy": ("haproxy", "/usr/sbin/haproxy", "haproxy"),
    "redis": ("redis", "/usr/bin/redis-check-rdb", "redis"),
    "postgresql": ("postgresql", "/usr/lib/postgresql/15/bin/postgres", "postgres"),
    "chrony": ("chrony", "/usr/sbin/chronyd", "_chrony"),
    "nginx": ("nginx", "/usr/sbin/nginx", "www-data"),
}


def profile_text(name: str) -> str:
    return (PACKAGES_DIR / name / "files" / "apparmor").read_text()


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_recipe_ships_a_disabled_service_and_its_profile(name: str) -> None:
    recipe = load_recipes(PACKAGES_DIR)[name]
    copies = {c.to: c for c in recipe.copy}
    assert f"/etc/sv/{name}" in copies and f"/etc/apparmor.d/{name}" in copies
    assert {"mixos-init", "mixos-hardening"} <= set(recipe.dependencies)
    if recipe.compact:  # the compact form strips etc/apparmor.d unless kept
        assert f"etc/apparmor.d/{name}" in recipe.keep
    sv = PACKAGES_DIR / name / copies[f"/etc/sv/{name}"].src
    assert (sv / "run").stat().st_mode & 0o111, f"{name}: run is not executable"
    assert (sv / "run").read_text().startswith("#!/bin/sh\n")
    assert "exec 2>&1" in (sv / "run").read_text()
    conf = _conf(sv / "conf")
    assert conf.get("enable") == "no", f"{name}: must be installed disabled"
    assert conf.get("description")
    for port in conf.get("ports", "").split():
        assert re.fullmatch(r"\d+/(tcp|udp)", port), port


def _conf(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_runs_as_its_own_user(name: str) -> None:
    """Either the run script switches user (chpst -u), or the daemon's configuration
    names the user it drops to; and the recipe (or the base) makes that user."""
    recipe = load_recipes(PACKAGES_DIR)[name]
    user = DAEMONS[name][2]
    run = (PACKAGES_DIR / name / "files/sv/run").read_text()
    made = {u.name for u in recipe.users}
    base_users = (PACKAGES_DIR / "base-files/files/etc/passwd").read_text()
    assert user in made or re.search(rf"^{re.escape(user)}:", base_users, re.MULTILINE), \
        f"{name}: nobody makes the user {user}"
    if f"chpst -u {user}:{user}" in run:
        return
    drops = {"haproxy": (PACKAGES_DIR / "haproxy/files/haproxy.cfg", r"^\s*user haproxy$"),
             # Debian builds chronyd with -u _chrony as its default user.
             "chrony": (PACKAGES_DIR / "chrony/files/sv/run", r"/usr/sbin/chronyd "),
             "nginx": (None, "")}
    assert name in drops, f"{name}: the run script does not switch to {user}"
    path, pattern = drops[name]
    if path is not None:
        assert re.search(pattern, path.read_text(), re.MULTILINE)


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_profile_is_named_attached_and_enforced(name: str) -> None:
    profile, attach, _user = DAEMONS[name]
    header = re.search(r"^profile (\S+) (/\S+) flags=\(([^)]*)\) \{$", profile_text(name),
                       re.MULTILINE)
    assert header, f"{name}: no 'profile NAME PATH flags=(...) {{' line"
    assert header.groups() == (profile, attach, "enforce")
    assert "include <tunables/mixos>" in profile_text(name)


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_profile_does_not_grant_everything(name: str) -> None:
    rules = [ln.strip() for ln in profile_text(name).splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    broad = [r for r in rules if r.startswith(("capability,", "file,")) or r == "network,"
             or re.match(r"^(owner )?/\*\* ", r) or re.match(r"^(owner )?/\*\*.* [rwa]*w", r)
             or re.search(r"\b[PUCpuc]x,$", r) or " ux," in r]
    assert not broad, f"{name} grants blanket access: {broad}"
    for cap in ("sys_admin", "sys_module", "sys_ptrace", "mac_admin"):
        assert f"capability {cap}," not in rules
    assert not any(r.startswith("/etc/shadow") for r in rules)


def policy_dir(tmp: Path) -> tuple[Path, Path]:
    """Debian's apparmor_parser and /etc/apparmor.d as an image with the package has it."""
    tree = unpacked("apparmor")["apparmor"]
    base = tmp / "apparmor.d"
    shutil.copytree(SECURITY / "apparmor.d", base)
    shutil.copytree(tree / "etc/apparmor.d/abi", base / "abi")
    for name in DAEMONS:
        shutil.copyfile(PACKAGES_DIR / name / "files/apparmor", base / name)
    return tree / "sbin/apparmor_parser", base


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_profile_compiles_with_debian_apparmor_parser(name: str, tmp_path: Path) -> None:
    parser, base = policy_dir(tmp_path)
    result = subprocess.run([str(parser), "-Q", "-S", "--base", str(base), "-I", str(base),
                             str(base / name)], capture_output=True, timeout=120, check=False)
    errors = [ln for ln in result.stderr.decode().splitlines()
              if "parser.conf' not found" not in ln and "Cache read/write disabled" not in ln]
    assert result.returncode == 0, f"apparmor_parser failed on {name}:\n" + "\n".join(errors)
    assert len(result.stdout) > 1000, "no binary policy produced"
    assert not errors, "apparmor_parser warned:\n" + "\n".join(errors)
