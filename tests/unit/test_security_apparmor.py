"""The AppArmor profiles compile with Debian's apparmor_parser (the one the image
loads them with), in enforce mode, with the names and attachments the loader and
the VM test expect, and without rules that would make them meaningless."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from security_debian import unpacked
from security_policy import SECURITY

from mixbuild.packages import apparmor

PROFILES = SECURITY / "apparmor.d"
# profile file -> (profile name, attachment path or None for change_onexec only)
EXPECTED = {"usr.sbin.sshd": ("sshd", "/usr/sbin/sshd"), "udhcpc": ("udhcpc", None),
            "ntpd": ("ntpd", None)}


def policy_tree(tmp: Path) -> tuple[Path, Path]:
    """apparmor_parser and a policy dir laid out as /etc/apparmor.d in the image."""
    tree = unpacked("apparmor")["apparmor"]
    base = tmp / "apparmor.d"
    shutil.copytree(PROFILES, base)
    shutil.copytree(tree / "etc/apparmor.d/abi", base / "abi")
    return tree / "sbin/apparmor_parser", base


def compile_profile(parser: Path, base: Path, name: str) -> subprocess.CompletedProcess[bytes]:
    # -Q: do not load into the kernel; -S: write the binary policy to stdout.
    return subprocess.run([str(parser), "-Q", "-S", "--base", str(base), "-I", str(base),
                           str(base / name)], capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_compiles_with_debian_apparmor_parser(name: str, tmp_path: Path) -> None:
    parser, base = policy_tree(tmp_path)
    result = compile_profile(parser, base, name)
    errors = [ln for ln in result.stderr.decode().splitlines()
              if "parser.conf' not found" not in ln and "Cache read/write disabled" not in ln]
    assert result.returncode == 0, f"apparmor_parser failed on {name}:\n" + "\n".join(errors)
    assert len(result.stdout) > 1000, "no binary policy produced"
    assert not errors, "apparmor_parser warned:\n" + "\n".join(errors)


def test_a_syntax_error_is_caught(tmp_path: Path) -> None:
    parser, base = policy_tree(tmp_path)
    (base / "usr.sbin.sshd").write_text(
        (base / "usr.sbin.sshd").read_text().replace("/etc/shadow r,", "/etc/shadow rq,"))
    assert compile_profile(parser, base, "usr.sbin.sshd").returncode != 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_is_named_attached_and_enforced(name: str) -> None:
    text = (PROFILES / name).read_text()
    profile, attach = EXPECTED[name]
    header = re.search(r"^profile (\S+)(?: (/\S+))? flags=\(([^)]*)\) \{$", text, re.MULTILINE)
    assert header, f"{name}: no 'profile NAME [PATH] flags=(...) {{' line"
    assert header.group(1) == profile
    assert header.group(2) == attach
    assert header.group(3) == "enforce"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_does_not_grant_everything(name: str) -> None:
    rules = [ln.strip() for ln in (PROFILES / name).read_text().splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    broad = [r for r in rules if r.startswith(("capability,", "file,")) or r == "network,"
             or re.match(r"^(owner )?/\*\* ", r) or re.match(r"^(owner )?/\*\*.* [rwa]*w", r)]
    assert not broad, f"{name} grants blanket access: {broad}"
    assert "capability sys_admin," not in rules
    assert "capability sys_module," not in rules
    assert not any(r.startswith("/etc/shadow") and "w" in r.split()[-1] for r in rules)


def test_precompiled_policy_matches_the_profiles() -> None:
    """configs/security/apparmor-compiled is what `python -m mixbuild.packages.apparmor` makes
    from the current profiles (the image loads it instead of compiling at boot)."""
    unpacked("apparmor")  # skips without root, like the other Debian-tool tests
    bad = apparmor.stale()
    assert not bad, (f"stale precompiled AppArmor policy: {bad}; regenerate with "
                     "PYTHONPATH=src .venv/bin/python -m mixbuild.packages.apparmor")
