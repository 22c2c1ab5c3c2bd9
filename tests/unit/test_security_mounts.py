"""mixos-mounts (BusyBox sh, as on the target) gives /tmp, /var/tmp and /dev/shm
nosuid,nodev,noexec, /home nosuid,nodev and /proc hidepid=2. Runs in a private mount namespace on fresh
tmpfs and proc instances, so the host's own mounts are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from security_policy import PROJECT

SCRIPT = PROJECT / "packages" / "mixos-hardening" / "files" / "mixos-mounts"


def run_in_namespace(setup: str) -> dict[str, set[str]]:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("busybox") is None:
        pytest.skip("needs root, unshare and busybox")
    # The script's text goes in through the environment: the checkout may itself
    # live under /tmp, which the setup hides behind a fresh tmpfs.
    script = (f"{setup}; busybox sh -c \"$MIXOS_MOUNTS\" mixos-mounts || exit 9; "
              "awk '$2==\"/tmp\"||$2==\"/var/tmp\"||$2==\"/dev/shm\"||$2==\"/home\"||"
              "$2==\"/proc\"{print $2, $4}' /proc/mounts")
    env = dict(os.environ, MIXOS_MOUNTS=SCRIPT.read_text())
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    opts: dict[str, set[str]] = {}
    for line in result.stdout.splitlines():
        mountpoint, options = line.split()
        opts[mountpoint] = set(options.split(","))  # the last mount of a point wins
    return opts


def test_weak_mounts_are_hardened() -> None:
    opts = run_in_namespace("mount -t tmpfs -o mode=1777 tmpfs /tmp && "
                            "mount -t tmpfs -o mode=1777 tmpfs /dev/shm && mount -t proc proc /proc")
    for mountpoint in ("/tmp", "/var/tmp", "/dev/shm"):
        assert {"nosuid", "nodev", "noexec"} <= opts[mountpoint], (mountpoint, opts[mountpoint])
    assert "hidepid=invisible" in opts["/proc"], opts["/proc"]


def test_var_tmp_and_home_on_a_disk_root_are_bound_with_the_options() -> None:
    """The host's root is no overlay, as on a disk install: /var/tmp and /home become
    binds of themselves; homes keep exec."""
    opts = run_in_namespace("mkdir -p /var/tmp /home")
    assert {"nosuid", "nodev", "noexec"} <= opts["/var/tmp"], opts["/var/tmp"]
    assert {"nosuid", "nodev"} <= opts["/home"] and "noexec" not in opts["/home"], opts["/home"]


def test_already_hardened_mounts_keep_their_options() -> None:
    opts = run_in_namespace("mount -t tmpfs -o nosuid,nodev,noexec,size=1m tmpfs /tmp && "
                            "mount -t tmpfs -o nosuid,nodev,noexec tmpfs /dev/shm && "
                            "mount -t proc -o hidepid=2 proc /proc")
    assert "size=1024k" in opts["/tmp"], opts["/tmp"]
    assert "hidepid=invisible" in opts["/proc"]
