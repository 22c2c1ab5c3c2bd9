"""`mix upgrade` on a running MixOS replaces what it runs on: a second release of
the repository changes mix, python3, glibc, busybox and libsqlite3 (new versions,
new contents: every ELF file of theirs differs, mix says its new version) and
e2fsprogs. The upgrade does the first five in a transaction of their own, starts
the new mix and does the rest; killed with SIGKILL at each named checkpoint of
it (mix.failpoint), the system is left so that the next `mix` runs, recovers
and completes the upgrade, and `mix verify` is clean.

One boot: the installed VISO (a qcow2 overlay) with the packages already in
mix's cache, saved with `savevm`; every run starts from that state (`loadvm`).
The release is served over HTTP from 127.0.0.1 (the guest's 10.0.2.2).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LOGIN_TIMEOUT, Guest, KeyPair, overlay
from release import make_release, serve

from mixbuild.common import ARTIFACTS
from mixbuild.vm.guest import VM
from mixbuild.vm.qemu import Drive, Machine, free_port

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

REPO = ARTIFACTS / "repo"
RUNS_ON = ("busybox", "glibc", "libsqlite3", "mix", "python3")  # what mix runs on
CHANGED = (*RUNS_ON, "e2fsprogs")  # and a package that is not
SAVED = "before-upgrade"
# Where the guest's mix and its runtime live (their new contents end in a note).
BINARIES = ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/bin/python3.11", "/usr/bin/busybox",
            "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6")
# The named checkpoints of the upgrade in the order it passes them: the first
# transaction (what mix runs on), the restart, the second (the rest).
PHASES = ("staging", "staged", "committed", "applying", "applied")
CHECKPOINTS = [f"{p}@1" for p in PHASES] + ["restarting"] + [f"{p}@2" for p in PHASES]


def versions(repo: Path) -> dict[str, str]:
    """The newest version of each package in REPO's index."""
    from mix.version import compare

    newest: dict[str, str] = {}
    for p in json.loads((repo / "index.json").read_text())["packages"]:
        if p["name"] not in newest or compare(p["version"], newest[p["name"]]) > 0:
            newest[p["name"]] = p["version"]
    return newest


@pytest.fixture(scope="module")
def release(vm_workdir: Path) -> Path:
    old = versions(REPO)
    return make_release(REPO, vm_workdir / "release-selfupgrade",
                        {name: f"{old[name]}.1" for name in CHANGED}, changed=True)


class Upgrader:
    """The booted VISO, the release's URL, and the saved state before the upgrade."""

    def __init__(self, guest: Guest, url: str, new: dict[str, str]) -> None:
        self.g = guest
        self.url = url
        self.new = new

    def mix(self, args: str, env: str = "", timeout: float = 300) -> tuple[int, str]:
        """Run `mix ARGS` in the guest; its exit status and output (stdout, stderr)."""
        r = self.g.ssh(f"{env} mix --repo {self.url} -y {args} 2>&1; echo \"exit=$?\"",
                       timeout=timeout)
        out, _, code = r.stdout.rstrip().rpartition("exit=")
        return int(code), out

    def restore(self) -> None:
        answer = self.g.vm.hmp(f"loadvm {SAVED}", timeout=120)
        assert not answer.strip(), answer
        self.g.wait_ssh()

    def installed(self) -> dict[str, str]:
        return {p["name"]: p["version"] for p in json.loads(self.g.sh("mix list --json"))}

    def check_upgraded(self) -> None:
        """The new versions installed, their files on disk, the new mix running, and
        `mix verify` clean: one SSH command (each costs a second or two under TCG)."""
        r = self.g.ssh(
            f"for f in {' '.join(BINARIES)}; do tail -c 64 $f | grep -q 'mixos test release' "
            "|| echo \"not the new release's: $f\"; done; mix --version; "
            "mix verify > /tmp/verify.log 2>&1 || { echo 'verify failed:'; cat /tmp/verify.log; }; "
            "echo; mix list --json", timeout=600)
        said, _, listed = r.stdout.partition("\n\n")
        assert said.strip() == f"mix {self.new['mix']}", said
        installed = {p["name"]: p["version"] for p in json.loads(listed)}
        assert {n: installed[n] for n in CHANGED} == {n: self.new[n] for n in CHANGED}


@pytest.fixture(scope="module")
def upgrader(release: Path, viso_image: Path, vm_workdir: Path, nocloud_seed: Path,
             ssh_keypair: KeyPair, vm_accel: str,
             boot_metrics: dict[str, object]) -> Iterator[Upgrader]:
    disk = overlay(viso_image, vm_workdir / "viso-selfupgrade.qcow2")
    sockets = Path(tempfile.mkdtemp(prefix="mixos-sock-"))
    port = free_port()
    machine = Machine(accel=vm_accel, drives=(Drive(disk),), ssh_port=port,
                      disks=(nocloud_seed,), monitor=sockets / "hmp")
    vm = VM(machine, vm_workdir / f"selfupgrade-{port}.console.log").start()
    g = Guest(vm, port, ssh_keypair.private)
    try:
        g.wait_login(LOGIN_TIMEOUT)
        g.wait_ssh()
        with serve(release) as url:
            u = Upgrader(g, url, versions(release))
            code, out = u.mix("upgrade --download-only")
            assert code == 0, out
            g.sh("sync")
            start = time.monotonic()
            answer = vm.hmp(f"savevm {SAVED}", timeout=120)
            assert not answer.strip(), answer
            boot_metrics["selfupgrade_savevm_s"] = round(time.monotonic() - start, 1)
            yield u
    finally:
        g.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def test_upgrade_replaces_mix_python_glibc_then_the_new_mix_does_the_rest(
        upgrader: Upgrader, boot_metrics: dict[str, object]) -> None:
    u = upgrader
    u.restore()
    before = u.installed()
    assert all(before[n] != u.new[n] for n in CHANGED)
    start = time.monotonic()
    code, out = u.mix("upgrade")
    boot_metrics["selfupgrade_upgrade_s"] = round(time.monotonic() - start, 1)
    assert code == 0, out
    first = re.search(r"first mix and what it runs on, in a transaction of their own: (.*)",
                      out)
    assert first and sorted(first.group(1).split(", ")) == list(RUNS_ON), out
    assert f"mix: continuing with the new mix {u.new['mix']}" in out, out
    u.check_upgraded()


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_sigkill_at_a_checkpoint_of_the_upgrade_then_the_next_mix_recovers(
        upgrader: Upgrader, point: str) -> None:
    u = upgrader
    u.restore()
    code, out = u.mix("upgrade", env=f"MIX_FAILPOINT_KILL={point}")
    assert code == 128 + 9, f"not killed at {point}: exit {code}\n{out}"
    # The next mix (whichever the disk now holds) completes or undoes the
    # interrupted transaction, then upgrades what is left; when completing it
    # replaced what mix runs on, by the new mix.
    code, out = u.mix("upgrade")
    assert code == 0, out
    restarted = "it replaced mix or what it runs on (" + ", ".join(RUNS_ON) + \
        "): starting the new mix"
    assert (restarted in out) == (point in ("committed@1", "applying@1")), out
    u.check_upgraded()
