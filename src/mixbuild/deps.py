"""Host set-up: install the Debian packages and the Python environment the build needs.

Runs with the host's python3 and the stdlib only, because it is what creates the
virtual environment everything else runs in.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

# Debian 12 packages the build and the tests use, and why.
DEBIAN_PACKAGES = [
    "linux-source-6.1",  # kernel source (6.1 LTS)
    "build-essential", "bc", "bison", "flex", "libelf-dev", "libssl-dev", "cpio",  # kernel build
    "gcc-12-plugin-dev",  # kernel build: the STACKLEAK GCC plugin is compiled against it
    "dpkg-dev",  # recipes built from Debian source packages: dpkg-source -x
    "xz-utils", "zstd", "busybox-static",  # initramfs
    "squashfs-tools", "grub-pc-bin", "grub-efi-amd64-bin", "grub-common",  # images
    "xorriso", "mtools", "dosfstools", "e2fsprogs", "fdisk",
    "qemu-system-x86", "qemu-utils", "ovmf",  # VM tests
    "openssh-client",  # VM tests log in over SSH
    "cloud-image-utils",  # cloud-init VM tests: cloud-localds makes NoCloud seeds as users do
    "iptables",  # kernel VM test loads firewall rules with the host's iptables
    "iproute2",  # security tests: network namespaces, veth and tap (ip netns, ip tuntap)
    "pacman-package-manager",  # benchmark peer
    "lz4",  # bench/debian_index.py reads apt's lz4-compressed lists
    "python3-venv",
]
PYTHON_EXTRAS = "[build,dev]"


def missing_packages(packages: list[str]) -> list[str]:
    """Packages not installed, asked of dpkg in one call."""
    fmt = "${Package} ${db:Status-Abbrev}\n"
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", fmt, *packages],
        capture_output=True, text=True, check=False,
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["ii"]}
    return [p for p in packages if p not in installed]


def install_debian(packages: list[str]) -> None:
    missing = missing_packages(packages)
    if not missing:
        return
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        sys.exit("mixbuild: missing Debian packages; as root run:\n  apt-get update && "
                 + shlex.join(cmd))
    print(f"mixbuild: installing {len(missing)} Debian packages: {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(cmd, check=True, env=env)


def setup_venv(venv: Path, project: Path) -> None:
    stamp = venv / ".mixos-deps"
    pyproject = project / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-e", f"{project}{PYTHON_EXTRAS}"], check=True)
    stamp.touch()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild deps", description=__doc__)
    parser.add_argument("--venv", default=".venv", type=Path)
    args = parser.parse_args(argv)
    project = Path(__file__).resolve().parents[2]
    install_debian(DEBIAN_PACKAGES)
    setup_venv(args.venv, project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
