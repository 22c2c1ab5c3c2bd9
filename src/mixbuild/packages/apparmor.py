"""Precompiled AppArmor policy for MixOS: the profiles of configs/security/apparmor.d
compiled once, on the build host, with Debian's apparmor_parser (the one the image
ships) against the feature ABI its parser.conf pins, so that boot only loads them
(written to the kernel as they are, see mixos-apparmor) instead of compiling them
(0.6-1.9 s). The output is committed in configs/security/apparmor-compiled/:

    <profile file>.bin   binary policy, one per profile file
    sources.sha256       sha256 of every file the binaries were compiled from, at its
                         path in the image; mixos-apparmor loads the binaries only when
                         `sha256sum -c` passes (an edited profile is compiled instead)

    python -m mixbuild.packages.apparmor          # regenerate after changing a profile
    python -m mixbuild.packages.apparmor --check  # exit 1 if the committed output is stale

tests/unit/test_security_apparmor.py fails when the committed output is stale.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mixbuild.packages import debian

PROJECT = Path(__file__).resolve().parents[3]
PROFILES = PROJECT / "configs" / "security" / "apparmor.d"
COMPILED = PROJECT / "configs" / "security" / "apparmor-compiled"
FEATURES = "usr/share/apparmor-features/features"  # pinned by Debian's parser.conf
ABI = "etc/apparmor.d/abi/3.0"


class AppArmorError(RuntimeError):
    """apparmor_parser failed; the message holds the command and its output."""


def profile_files(profiles: Path = PROFILES) -> list[Path]:
    """The profile files mixos-apparmor loads: regular files at the top level."""
    return sorted(p for p in profiles.iterdir() if p.is_file())


def compile_policy(profiles: Path, out: Path) -> dict[str, bytes]:
    """Compile every profile file of PROFILES; write OUT/<name>.bin and
    OUT/sources.sha256; return name -> binary."""
    tree = debian.fetch(["apparmor"])["apparmor"][1]
    parser = tree / "sbin" / "apparmor_parser"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="mixos-apparmor-") as tmp:
        base = Path(tmp) / "apparmor.d"
        shutil.copytree(profiles, base)
        shutil.copytree(tree / "etc/apparmor.d/abi", base / "abi")
        conf = Path(tmp) / "parser.conf"
        conf.write_text(f"policy-features={tree / FEATURES}\n")
        for profile in profile_files(profiles):
            cmd = [str(parser), "--config-file", str(conf), "--skip-kernel-load", "--stdout",
                   "--base", str(base), "--Include", str(base), str(base / profile.name)]
            proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
            if proc.returncode != 0 or not proc.stdout:
                raise AppArmorError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n"
                                    + proc.stderr.decode(errors="replace"))
            results[profile.name] = proc.stdout
            (out / f"{profile.name}.bin").write_bytes(proc.stdout)
        sources = {f"/etc/apparmor.d/{p.relative_to(profiles)}": p.read_bytes()
                   for p in sorted(profiles.rglob("*")) if p.is_file()}
        sources[f"/{ABI}"] = (tree / ABI).read_bytes()
        sources[f"/{FEATURES}"] = (tree / FEATURES).read_bytes()
    lines = [f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in sources.items()]
    (out / "sources.sha256").write_text("".join(lines))
    return results


def stale(profiles: Path = PROFILES, committed: Path = COMPILED) -> list[str]:
    """Names of the committed files that differ from a fresh compilation."""
    with tempfile.TemporaryDirectory(prefix="mixos-apparmor-check-") as tmp:
        fresh = Path(tmp)
        compile_policy(profiles, fresh)
        names = sorted({p.name for p in fresh.iterdir()} | {p.name for p in committed.iterdir()})
        return [n for n in names if not (committed / n).is_file() or not (fresh / n).is_file()
                or (committed / n).read_bytes() != (fresh / n).read_bytes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixbuild.packages.apparmor",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if configs/security/apparmor-compiled is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            bad = stale()
            if bad:
                print(f"stale precompiled AppArmor policy: {', '.join(bad)}; "
                      "run: PYTHONPATH=src .venv/bin/python -m mixbuild.packages.apparmor")
                return 1
            print("precompiled AppArmor policy is up to date")
            return 0
        for name in compile_policy(PROFILES, COMPILED):
            print(f"compiled {name} -> {COMPILED.relative_to(PROJECT)}/{name}.bin")
    except AppArmorError as e:
        print(f"mixbuild apparmor: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
