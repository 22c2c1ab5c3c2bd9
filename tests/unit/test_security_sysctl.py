"""The shipped sysctl files set every value MixOS requires, and the loader
(mixos-sysctl, run with BusyBox sh as on the target) applies them, skips keys of
left-out kernel features, propagates conf.default.* to existing interfaces and
fails on a value the kernel does not keep."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from security_policy import (
    PROJECT,
    REQUIRED_SYSCTL,
    SYSCTL_DIR,
    read_sysctl_files,
    sysctl_violations,
)

LOADER = PROJECT / "packages" / "mixos-hardening" / "files" / "mixos-sysctl"


def test_every_required_sysctl_is_set_to_the_required_value() -> None:
    problems = sysctl_violations(read_sysctl_files())
    assert not problems, "sysctl files in configs/security/sysctl.d:\n  " + "\n  ".join(problems)


def test_a_weakened_value_is_caught(tmp_path: Path) -> None:
    for conf in SYSCTL_DIR.glob("*.conf"):
        text = conf.read_text().replace("kernel.kptr_restrict = 2", "kernel.kptr_restrict = 1")
        (tmp_path / conf.name).write_text(text)
    assert sysctl_violations(read_sysctl_files(tmp_path)) == [
        "kernel.kptr_restrict = 1 (want 2)"]


def test_no_key_is_set_twice_with_different_values() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for conf in sorted(SYSCTL_DIR.glob("*.conf")):
        for key, value in read_sysctl_files_single(conf).items():
            if key in seen and seen[key][1] != value:
                pytest.fail(f"{key}: {seen[key][0]} sets {seen[key][1]}, {conf.name} sets {value}")
            seen[key] = (conf.name, value)


def read_sysctl_files_single(conf: Path) -> dict[str, str]:
    tmp = {}
    for line in conf.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = (p.strip() for p in line.split("=", 1))
            tmp[key] = value
    return tmp


def fake_proc_sys(root: Path, keys: list[str], ifaces: list[str]) -> None:
    """A /proc/sys look-alike holding KEYS (value 0) and per-interface conf dirs."""
    for key in keys:
        path = root / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0\n")
    for fam in ("ipv4", "ipv6"):
        for iface in ifaces:
            for key in keys:
                prefix = f"net.{fam}.conf.default."
                if key.startswith(prefix):
                    path = root / "net" / fam / "conf" / iface / key.removeprefix(prefix)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("1\n")


def run_loader(sysctl_dir: Path, *files: Path,
               udhcpc_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    sh = shutil.which("busybox")
    if sh is None:
        pytest.skip("busybox is not installed (make deps installs busybox-static)")
    return subprocess.run([sh, "sh", str(LOADER), *map(str, files)], capture_output=True,
                          text=True, timeout=60,
                          env={"MIXOS_SYSCTL_DIR": str(sysctl_dir), "PATH": "/usr/bin:/bin",
                               "MIXOS_UDHCPC_DIR": str(udhcpc_dir or sysctl_dir / "no-udhcpc")},
                          check=False)


def test_loader_applies_files_and_propagates_defaults_to_interfaces(tmp_path: Path) -> None:
    values = read_sysctl_files()
    missing = ["kernel.kexec_load_disabled", "net.core.bpf_jit_harden"]
    present = [k for k in values if k not in missing]
    proc_sys = tmp_path / "sys"
    fake_proc_sys(proc_sys, present, ["eth0", "lo"])
    result = run_loader(proc_sys, *sorted(SYSCTL_DIR.glob("*.conf")))
    assert result.returncode == 0, result.stderr
    for key in present:
        got = (proc_sys / key.replace(".", "/")).read_text().strip()
        assert got == values[key], f"{key}: loader wrote {got!r}, file says {values[key]!r}"
    assert (proc_sys / "net/ipv4/conf/eth0/send_redirects").read_text().strip() == "0"
    assert (proc_sys / "net/ipv6/conf/eth0/accept_redirects").read_text().strip() == "0"
    assert "not in this kernel: kernel.kexec_load_disabled net.core.bpf_jit_harden" in result.stdout


def test_loader_leaves_accept_ra_of_the_dhcp_interface_alone(tmp_path: Path) -> None:
    """Run again after boot, the loader does not undo the network service's choice:
    the interface udhcpc runs on keeps accepting router advertisements."""
    proc_sys = tmp_path / "sys"
    fake_proc_sys(proc_sys, ["net.ipv6.conf.default.accept_ra"], ["eth0", "eth1"])
    udhcpc = tmp_path / "udhcpc"
    udhcpc.mkdir()
    (udhcpc / "eth0.pid").write_text("123\n")
    conf = tmp_path / "ra.conf"
    conf.write_text("net.ipv6.conf.default.accept_ra = 0\n")
    result = run_loader(proc_sys, conf, udhcpc_dir=udhcpc)
    assert result.returncode == 0, result.stderr
    conf_dir = proc_sys / "net/ipv6/conf"
    assert (conf_dir / "eth0/accept_ra").read_text().strip() == "1"
    assert (conf_dir / "eth1/accept_ra").read_text().strip() == "0"


def test_loader_fails_when_the_kernel_does_not_keep_a_value(tmp_path: Path) -> None:
    proc_sys = tmp_path / "sys"
    (proc_sys / "kernel").mkdir(parents=True)
    # A value file that swallows writes and reads back empty: a key the kernel refuses.
    (proc_sys / "kernel" / "sysrq").symlink_to("/dev/null")
    conf = tmp_path / "x.conf"
    conf.write_text("kernel.sysrq = 0\n")
    result = run_loader(proc_sys, conf)
    assert result.returncode == 1
    assert 'cannot set kernel.sysrq = 0 (reads back "")' in result.stderr


def test_every_required_key_is_documented() -> None:
    doc = (PROJECT / "docs" / "security.md").read_text()
    undocumented = [k for k in REQUIRED_SYSCTL if k.split(".")[-1] not in doc]
    assert not undocumented, f"docs/security.md does not mention: {undocumented}"
