"""MixOS is hardened as docs/security.md says, checked on a booted image.

The guest boots from the ISO with two NICs: the harness's user-mode NIC (SSH from
127.0.0.1, used to look inside) and a tap NIC inside a network namespace made for
this test (the "outside" host: 192.0.2.1, .3, .4 and 2001:db8::1; the guest is
192.0.2.2 and 2001:db8::2, documentation ranges that exist nowhere else). Network
probes run from that namespace (tests/vm/security_probe.py), so they cross the
guest's INPUT chain exactly as traffic from another machine would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Guest, Images, KeyPair, overlay

from mixbuild.common import ARTIFACTS, PROJECT
from mixbuild.packages import elfhardening
from mixbuild.vm.guest import VM
from mixbuild.vm.qemu import Drive, Machine, free_port

sys.path.insert(0, str(PROJECT / "tests" / "unit"))
from security_policy import (
    ALLOWED_SETID,
    SYSCTL_FEATURE,
    kernel_config,
    parse_sshd_effective,
    read_sysctl_files,
    sshd_violations,
)

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

PROBE = Path(__file__).with_name("security_probe.py")
TAP_MAC = "52:54:00:00:5e:02"
GUEST4, GUEST6 = "192.0.2.2", "2001:db8::2"
OUTSIDE4, OUTSIDE6 = "192.0.2.1", "2001:db8::1"
FLOOD_SOURCE, OTHER_SOURCE = "192.0.2.3", "192.0.2.4"
SSH_BURST = 20  # --hashlimit-burst in configs/security/firewall/rules
TEST_USER, TEST_PASSWORD = "tester", "Corr3ct-Horse-Battery"
CONTROL_SSHD_PORT = 2222


def host_run(cmd: list[str], timeout: float = 60, check: bool = True,
             **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                            **kw)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        pytest.fail(f"on the host, {shlex.join(cmd)} exited {result.returncode}:\n"
                    f"{result.stderr[-2000:]}", pytrace=False)
    return result


@dataclass
class SecureGuest:
    """The guest, its tap NIC's namespace, and one multiplexed SSH connection (the
    firewall limits new SSH connections per source, and under user-mode networking
    every host connection comes from the same address)."""

    guest: Guest
    netns: str
    control_dir: Path
    workdir: Path
    key: Path
    medium: str = "iso"  # "iso": the live ISO; "viso": the installed system (VISO)

    def ssh_argv(self, *extra: str) -> list[str]:
        return self.guest.ssh_argv("-o", "ControlMaster=auto",
                                   "-o", f"ControlPath={self.control_dir}/%C",
                                   "-o", "ControlPersist=600", *extra)

    def ssh(self, cmd: str, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.ssh_argv(), cmd], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if check and proc.returncode != 0:
            pytest.fail(f"in the guest, {cmd!r} exited {proc.returncode}\nstdout: "
                        f"{proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}", pytrace=False)
        return proc

    def sh(self, cmd: str, timeout: float = 120) -> str:
        return self.ssh(cmd, timeout=timeout).stdout

    def outside(self, cmd: list[str], timeout: float = 300,
                check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
        return host_run(["ip", "netns", "exec", self.netns, *cmd], timeout=timeout,
                        check=check, **kw)

    def probe(self, *args: str, timeout: float = 300) -> dict:
        out = self.outside([sys.executable, str(PROBE), *args], timeout=timeout).stdout
        return json.loads(out)

    def log(self) -> str:
        return self.sh("cat /var/log/messages")

    def as_user(self, cmd: str, user: str = "tester", timeout: float = 60) -> str:
        """CMD's output as USER (logged in with the test key, over its own
        multiplexed connection); the exit status is the caller's to print."""
        argv = [a if a != "root@127.0.0.1" else f"{user}@127.0.0.1" for a in self.ssh_argv()]
        proc = subprocess.run([*argv, cmd], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode == 255:
            pytest.fail(f"ssh as {user} failed: {proc.stderr[-2000:]}", pytrace=False)
        return proc.stdout + proc.stderr


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the tap NIC and its network namespace need root")


@pytest.fixture(scope="module", params=["iso", "viso"])
def sec(request: pytest.FixtureRequest, mixos_images: Images, vm_accel: str, vm_workdir: Path,
        ssh_keypair: KeyPair, nocloud_seed: Path) -> Iterator[SecureGuest]:
    """Every check below runs twice: on the live ISO, and on an installed system
    (the VISO, booted from its disk through an overlay)."""
    need_root()
    medium = request.param
    tag = f"{os.getpid() % 100000}"
    tap, netns = f"mxsec{tag}", f"mixos-sec-{tag}"
    # A short path: Unix socket names (the SSH control socket) are limited to 108
    # bytes, and pytest-xdist's temporary directories are long.
    control = Path(tempfile.mkdtemp(prefix="mxsec-", dir="/tmp"))
    host_run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    port = free_port()
    tap_nic = ("-netdev", f"tap,id=sec1,ifname={tap},script=no,downscript=no",
               "-device", f"virtio-net-pci,netdev=sec1,romfile=,mac={TAP_MAC}")
    if medium == "viso":
        disk = overlay(request.getfixturevalue("viso_image"), vm_workdir / "security-viso.qcow2")
        machine = Machine(accel=vm_accel, drives=(Drive(disk),), ssh_port=port,
                          disks=(nocloud_seed,), extra=tap_nic)
    else:
        machine = Machine(accel=vm_accel, iso=mixos_images.iso, ssh_port=port,
                          disks=(nocloud_seed,), extra=tap_nic)
    vm = VM(machine, vm_workdir / f"security-{medium}-{port}.console.log").start()
    guest = Guest(vm, port, ssh_keypair.private)
    sg = SecureGuest(guest, netns, control, vm_workdir, ssh_keypair.private, medium)
    try:
        guest.wait_login()
        guest.wait_ssh()
        # QEMU holds the tap open; move it into the namespace that plays "outside".
        host_run(["ip", "netns", "add", netns])
        host_run(["ip", "link", "set", tap, "netns", netns])
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{OUTSIDE4}/24", "dev", tap],
                    ["ip", "addr", "add", f"{FLOOD_SOURCE}/24", "dev", tap],
                    ["ip", "addr", "add", f"{OTHER_SOURCE}/24", "dev", tap],
                    ["ip", "-6", "addr", "add", f"{OUTSIDE6}/64", "dev", tap, "nodad"],
                    ["ip", "link", "set", tap, "up"]):
            sg.outside(cmd)
        nic = sg.sh(f"for d in /sys/class/net/*; do [ \"$(cat $d/address)\" = {TAP_MAC} ] && "
                    "echo ${d##*/}; done; true").strip()
        assert nic, f"the guest has no NIC with MAC {TAP_MAC}"
        sg.sh(f"ip addr add {GUEST4}/24 dev {nic} && ip -6 addr add {GUEST6}/64 dev {nic} && "
              f"ip link set {nic} up && i=0; while ip -6 addr show dev {nic} | grep -q tentative "
              f"&& [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done")
        yield sg
    finally:
        subprocess.run([*sg.ssh_argv(), "-O", "exit"], capture_output=True, timeout=15,
                       check=False)
        guest.stop()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30,
                       check=False)
        subprocess.run(["ip", "link", "del", tap], capture_output=True, timeout=30, check=False)
        shutil.rmtree(control, ignore_errors=True)


# ---- kernel ---------------------------------------------------------------------------

def test_kernel_command_line_has_every_hardening_argument(sec: SecureGuest) -> None:
    wanted = (PROJECT / "configs" / "kernel" / "cmdline").read_text().split()
    running = sec.sh("cat /proc/cmdline").split()
    missing = [arg for arg in wanted if arg not in running]
    assert not missing, f"/proc/cmdline lacks {missing}\n(is: {' '.join(running)})"


def dhcp_interface(sec: SecureGuest) -> str:
    """The NIC the network service configures by DHCP (udhcpc's pid file names it)."""
    pids = [f for f in sec.sh("ls /run/udhcpc").split() if f.endswith(".pid")]
    assert len(pids) == 1, f"udhcpc pid files: {pids}"
    return pids[0].removesuffix(".pid")


def test_every_sysctl_reads_back(sec: SecureGuest) -> None:
    values = read_sysctl_files()
    # The per-interface copies of conf.default.* for the NICs that existed at boot
    # (both: the user-mode NIC and the tap NIC), except where the network service
    # turns router advertisements on again for the interface it runs DHCP on.
    nics = [n for n in sec.sh("ls /sys/class/net").split() if n != "lo"]
    assert len(nics) >= 2, nics
    dhcp = dhcp_interface(sec)
    for key, value in list(values.items()):
        if ".conf.default." in key:
            for nic in nics:
                values[key.replace(".default.", f".{nic}.")] = value
    values[f"net.ipv6.conf.{dhcp}.accept_ra"] = "1"
    keys = " ".join(sorted(values))
    out = sec.sh(f"for k in {keys}; do f=/proc/sys/$(echo $k | tr . /); "
                 "if [ -e $f ]; then echo \"$k=$(cat $f)\"; else echo \"$k=<absent>\"; fi; done")
    got = dict(line.split("=", 1) for line in out.splitlines())
    config = kernel_config(ARTIFACTS / "kernel" / "config")
    wrong = []
    for key, want in values.items():
        have = " ".join(got.get(key, "<not read>").split())
        if have == "<absent>":
            option = SYSCTL_FEATURE.get(key)
            if option and option not in config:
                continue  # the kernel leaves the feature out: nothing to restrict
            wrong.append(f"{key} is missing although {option or 'its feature'} is built in")
        elif have != want:
            wrong.append(f"{key} = {have} (want {want})")
    assert not wrong, "sysctl values in the running guest:\n  " + "\n  ".join(wrong)


def test_router_advertisements_only_on_the_dhcp_interface(sec: SecureGuest) -> None:
    dhcp = dhcp_interface(sec)
    out = sec.sh("cd /proc/sys/net/ipv6/conf && for d in *; do echo $d $(cat $d/accept_ra); done")
    accept = dict(line.split() for line in out.splitlines())
    want = {nic: ("1" if nic == dhcp else "0") for nic in accept if nic != "lo"}
    assert {k: accept[k] for k in want} == want, f"accept_ra per interface: {accept}"


USERNS_DROP_IN = "/etc/sysctl.d/60-mixos-userns.conf"  # mixinstall.system.USERNS_SYSCTL


def test_user_namespaces_need_the_documented_switch(sec: SecureGuest) -> None:
    """As a user, `unshare -Ur` (root in a new user namespace) fails by default and
    works once the drop-in docs/security.md names is there and loaded."""
    add_test_user(sec)
    sec.sh(f"test ! -e {USERNS_DROP_IN}")
    unshare = "unshare -Ur sh -c 'id -u' 2>&1; echo rc=$?"
    denied = sec.as_user(unshare)
    assert "rc=0" not in denied and "Operation not permitted" in denied, denied
    sec.sh(f"echo 'kernel.unprivileged_userns_clone = 1' > {USERNS_DROP_IN} && mixos-sysctl")
    try:
        allowed = sec.as_user(unshare)
    finally:
        sec.sh(f"rm -f {USERNS_DROP_IN} && mixos-sysctl")
    assert allowed.split() == ["0", "rc=0"], allowed
    again = sec.as_user(unshare)
    assert "rc=0" not in again, f"the switch did not turn off again: {again}"


def test_core_dumps_are_discarded(sec: SecureGuest) -> None:
    """A user's crashing program leaves no core file, even with `ulimit -c
    unlimited`, and the kernel reports no dump (WCOREDUMP). The kernel is built
    without core dump support (CONFIG_COREDUMP unset; docs/kernel.md): its sysctls
    are absent. Built with it, the control shows that the same crash would leave a
    core.PID file with a file pattern, and the shipped pipe pattern leaves none."""
    add_test_user(sec)
    crash = ("cd && rm -f core* && ulimit -c unlimited && python3 -c '"
             "import os, signal\n"
             "pid = os.fork()\n"
             "if pid == 0: os.kill(os.getpid(), signal.SIGSEGV)\n"
             "_, status = os.waitpid(pid, 0)\n"
             "print(\"signal\", os.WTERMSIG(status), \"dumped\", os.WCOREDUMP(status))' "
             "&& sleep 0.5 && ls")
    out = sec.as_user(crash).split()
    assert out[:4] == ["signal", "11", "dumped", "False"], out
    assert not [f for f in out if f.startswith("core")], out
    if "CONFIG_COREDUMP" not in kernel_config(ARTIFACTS / "kernel" / "config"):
        sec.sh("test ! -e /proc/sys/kernel/core_pattern && test ! -e /proc/sys/kernel/core_uses_pid")
        return
    sec.sh("echo core > /proc/sys/kernel/core_pattern")
    try:
        files = sec.as_user(crash).split()
    finally:
        sec.sh("mixos-sysctl >/dev/null && rm -f /home/*/core*")
    assert [f for f in files if re.fullmatch(r"core\.\d+", f)], (
        f"control: no core.PID file with a file pattern ({files}): the test proves nothing")
    assert sec.sh("cat /proc/sys/kernel/core_pattern").strip() == "|/bin/false"


def test_lsms_active_and_lockdown_in_confidentiality_mode(sec: SecureGuest) -> None:
    lsms = sec.sh("cat /sys/kernel/security/lsm").strip().split(",")
    for lsm in ("lockdown", "yama", "landlock", "apparmor"):
        assert lsm in lsms, f"{lsm} is not active; /sys/kernel/security/lsm: {lsms}"
    assert "[confidentiality]" in sec.sh("cat /sys/kernel/security/lockdown")


def test_apparmor_profiles_enforced_and_services_confined(sec: SecureGuest) -> None:
    profiles = sec.sh("cat /sys/kernel/security/apparmor/profiles")
    assert all(f"{p} (enforce)" in profiles for p in ("sshd", "udhcpc", "ntpd")), profiles
    # Boot loads the policy precompiled on the build host, not compiled here.
    loaded = sec.sh("mixos-apparmor start")
    assert re.search(r"[1-9]\d* precompiled and 0 compiled", loaded), loaded
    listener = sec.sh("cat /proc/$(cat /run/sshd.pid)/attr/current").strip()
    assert listener == "sshd (enforce)", f"the SSH server runs as {listener!r}"
    dhcp = sec.sh("for p in $(pidof udhcpc); do cat /proc/$p/attr/current; echo; done").split("\n")
    dhcp = [d for d in dhcp if d]
    assert dhcp and all(d == "udhcpc (enforce)" for d in dhcp), (
        f"the DHCP client runs as {dhcp}: start it with /usr/lib/mixos/confine udhcpc udhcpc ...")


def test_ssh_server_effective_configuration(sec: SecureGuest) -> None:
    effective = parse_sshd_effective(sec.sh("/usr/sbin/sshd -T"))
    problems = sshd_violations(effective)
    assert not problems, "sshd -T in the guest:\n  " + "\n  ".join(problems)


def test_old_algorithms_are_refused_on_the_wire(sec: SecureGuest) -> None:
    """What sshd -T says, checked in real handshakes: a client offering only a legacy
    algorithm gets no connection; a default client gets the post-quantum hybrid."""
    legacy = {"Ciphers": "aes128-ctr", "KexAlgorithms": "diffie-hellman-group14-sha256",
              "HostKeyAlgorithms": "ecdsa-sha2-nistp256,rsa-sha2-512"}
    for option, value in legacy.items():
        proc = subprocess.run([*sec.guest.ssh_argv("-v", "-o", f"{option}={value}"), "true"],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
        assert proc.returncode == 255 and "no matching" in proc.stderr, (option, proc.stderr)
    proc = subprocess.run([*sec.guest.ssh_argv("-v"), "true"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kex: algorithm: sntrup761x25519-sha512@openssh.com" in proc.stderr
    assert "kex: host key algorithm: ssh-ed25519" in proc.stderr


def configured(option: str) -> list[str]:
    """An algorithm list of the shipped sshd_config, in its order."""
    for line in (PROJECT / "configs" / "security" / "sshd_config").read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0].lower() == option.lower():
            return words[1].split(",")
    raise AssertionError(f"configs/security/sshd_config sets no {option}")


# What OpenSSH 9.2 appends to the server's key exchange list: not algorithms but
# markers of extensions (strict key exchange against the Terrapin attack).
KEX_MARKERS = {"kex-strict-s-v00@openssh.com", "ext-info-s"}


def test_server_offers_only_the_configured_algorithms_on_the_wire(sec: SecureGuest) -> None:
    """The server's KEXINIT as another host on the network receives it, list by list:
    the post-quantum hybrid first, each host key algorithm once, nothing but what
    sshd_config says (test_security_sshd.py holds sshd_config to the policy)."""
    offer = sec.probe("sshkex", GUEST4, "22", timeout=60)
    print("\nthe SSH server offers:", json.dumps(offer, indent=1))
    assert offer["banner"].startswith("SSH-2.0-OpenSSH_") and "Debian" not in offer["banner"], (
        offer["banner"])
    kex = [k for k in offer["kex"] if k not in KEX_MARKERS]
    assert kex[0] == "sntrup761x25519-sha512@openssh.com", f"key exchange offered first: {kex}"
    assert kex == configured("KexAlgorithms"), offer["kex"]
    # Only the algorithms of keys the server holds are offered: the ed25519 key, no
    # certificate. Each once.
    assert offer["host_key"] == ["ssh-ed25519"], f"host key algorithms: {offer['host_key']}"
    for direction in ("c2s", "s2c"):
        assert offer[f"ciphers_{direction}"] == configured("Ciphers"), offer
        assert offer[f"macs_{direction}"] == configured("MACs"), offer
        assert offer[f"compression_{direction}"] == ["none"], offer
    for name in ("kex", "host_key", "ciphers_c2s", "macs_c2s"):
        assert len(set(offer[name])) == len(offer[name]), f"{name} lists a name twice: {offer[name]}"


# ---- accounts, files, mounts -------------------------------------------------------

def test_root_locked_no_empty_passwords_and_shadow_private(sec: SecureGuest) -> None:
    shadow = [line.split(":") for line in sec.sh("cat /etc/shadow").splitlines() if line]
    fields = {entry[0]: entry[1] for entry in shadow}
    assert not fields["root"].startswith("$"), "root has a password hash: it must be locked"
    assert fields["root"] in ("*", "!") or fields["root"].startswith("!"), fields["root"]
    empty = [user for user, pw in fields.items() if pw == ""]
    assert not empty, f"accounts with an empty password: {empty}"
    passwd_pw = {line.split(":")[0]: line.split(":")[1]
                 for line in sec.sh("cat /etc/passwd").splitlines() if line}
    assert all(pw == "x" for pw in passwd_pw.values()), f"/etc/passwd holds passwords: {passwd_pw}"
    mode, owner = sec.sh("stat -c '%a %u' /etc/shadow").split()
    assert owner == "0" and int(mode, 8) & 0o177 == 0, f"/etc/shadow is mode {mode} owner {owner}"


def mount_options(sec: SecureGuest) -> dict[str, set[str]]:
    opts: dict[str, set[str]] = {}
    for line in sec.sh("cat /proc/mounts").splitlines():
        fields = line.split()
        opts[fields[1]] = set(fields[3].split(","))
    return opts


def test_tmp_var_tmp_and_dev_shm_are_noexec_homes_nosuid_and_proc_hides_pids(
        sec: SecureGuest) -> None:
    opts = mount_options(sec)
    for mountpoint in ("/tmp", "/var/tmp", "/dev/shm"):
        assert {"nosuid", "nodev", "noexec"} <= opts[mountpoint], (mountpoint, opts[mountpoint])
    assert {"nosuid", "nodev"} <= opts["/home"] and "noexec" not in opts["/home"], opts["/home"]
    assert opts["/proc"] & {"hidepid=2", "hidepid=invisible"}, opts["/proc"]
    # The live system's /var/tmp is a tmpfs of its own; an installed one keeps its
    # /var/tmp on the disk (a bind of the directory onto itself).
    types = {line.split()[1]: line.split()[2] for line in sec.sh("cat /proc/mounts").splitlines()}
    assert types["/var/tmp"] == ("tmpfs" if sec.medium == "iso" else "ext4"), types["/var/tmp"]
    # noexec is real: a copy of a program in /tmp or /var/tmp does not run; in a home
    # it does.
    for directory in ("/tmp", "/var/tmp"):
        run = sec.ssh(f"cp /usr/bin/busybox {directory}/bb && {directory}/bb true; echo rc=$?; "
                      f"rm -f {directory}/bb", check=False)
        assert "rc=126" in run.stdout, (directory, run.stdout + run.stderr)
    run = sec.ssh("cp /usr/bin/busybox /home/busybox && /home/busybox true; echo rc=$?; "
                  "rm -f /home/busybox", check=False)
    assert "rc=0" in run.stdout, run.stdout + run.stderr


def test_root_squashfs_is_read_only_beneath_the_overlay(sec: SecureGuest) -> None:
    mounts = [line.split() for line in sec.sh("cat /proc/mounts").splitlines()]
    if sec.medium == "viso":
        # An installed system: its ext4 root, found by UUID; the ESP not executable.
        root = [m for m in mounts if m[1] == "/"][-1]
        assert root[2] == "ext4" and "rw" in root[3].split(","), root
        esp = [m for m in mounts if m[1] == "/boot/efi"]
        assert esp and {"nosuid", "nodev", "noexec"} <= set(esp[0][3].split(",")), esp
        return
    squash = [m for m in mounts if m[2] == "squashfs"]
    assert squash and all("ro" in m[3].split(",") for m in squash), squash
    assert [m for m in mounts if m[1] == "/"][-1][2] == "overlay"


def test_no_setuid_or_setgid_files(sec: SecureGuest) -> None:
    found = sec.sh("find / -xdev -type f \\( -perm -4000 -o -perm -2000 \\) 2>/dev/null").split()
    print("\nsetuid/setgid files in the running image:", found or "none")
    unexpected = [path for path in found if path not in ALLOWED_SETID]
    assert not unexpected, f"setuid/setgid files not justified in docs/security.md: {unexpected}"


# ---- firewall -----------------------------------------------------------------------

def test_firewall_default_deny_policies_are_loaded(sec: SecureGuest) -> None:
    for tool in ("iptables", "ip6tables"):
        rules = sec.sh(f"{tool} -S").splitlines()
        assert "-P INPUT DROP" in rules and "-P FORWARD DROP" in rules, f"{tool}: {rules[:3]}"
        assert any("hashlimit" in r for r in rules), f"{tool}: no SSH rate limit loaded"
        # Published container ports (forwarded after a DNAT) are closed too: nothing is
        # allowed at boot, so MIXOS-PUBLISHED is empty and they end in the drop.
        forward = [r for r in rules if r.startswith("-A FORWARD")]
        assert forward == ["-A FORWARD -m conntrack --ctstate DNAT -j MIXOS-PUBLISHED",
                           "-A FORWARD -j MIXOS-DROP"], f"{tool}: {forward}"
        assert not [r for r in rules if r.startswith("-A MIXOS-PUBLISHED")], tool


def start_listener(sec: SecureGuest, port: int) -> None:
    """A TCP service on PORT (IPv4 and IPv6) in the guest, as a user might start one
    (BusyBox httpd), and proof that loopback reaches it: what the outside cannot
    see is filtered, not absent."""
    sec.sh(f"nc -w 2 127.0.0.1 {port} </dev/null 2>/dev/null || "
           f"{{ mkdir -p /run/www-test && httpd -p {port} -h /run/www-test; }}")
    sec.sh(f"i=0; until nc -w 2 127.0.0.1 {port} </dev/null; do "
           f"i=$((i+1)); [ $i -lt 25 ] || exit 1; sleep 0.2; done")


def test_full_tcp_scan_from_outside_finds_only_ssh(sec: SecureGuest,
                                                    boot_metrics: dict[str, object]) -> None:
    start_listener(sec, 8080)  # a real service that the firewall must hide
    v4 = sec.probe("scan", GUEST4, "1", "65535", "--batch", "4000", "--source", OUTSIDE4,
                   timeout=600)
    boot_metrics["security_tcp_scan_ipv4_s"] = v4["seconds"]
    assert v4["open"] == [22], f"open TCP ports on {GUEST4}: {v4['open']}"
    assert v4["refused"] == 0, f"{v4['refused']} ports answered with a reset instead of silence"
    v6 = sec.probe("scan", GUEST6, "1", "65535", "--batch", "4000", timeout=600)
    boot_metrics["security_tcp_scan_ipv6_s"] = v6["seconds"]
    assert v6["open"] == [22], f"open TCP ports on {GUEST6}: {v6['open']}"


def test_scan_sees_a_port_once_the_firewall_opens_it(sec: SecureGuest) -> None:
    """Control for the scan above: the same probe, same path, finds 8080 when a rule
    allows it, so 'filtered' there means the firewall and nothing else."""
    start_listener(sec, 8080)
    sec.sh("iptables -I INPUT -p tcp --dport 8080 -j ACCEPT")
    try:
        seen = sec.probe("scan", GUEST4, "8000", "8100", "--source", OUTSIDE4)
    finally:
        sec.sh("iptables -D INPUT -p tcp --dport 8080 -j ACCEPT")
    assert seen["open"] == [8080], seen
    assert sec.probe("scan", GUEST4, "8080", "8080", "--source", OUTSIDE4)["open"] == []


def test_ssh_connections_faster_than_the_limit_are_dropped_per_source(sec: SecureGuest) -> None:
    flood = sec.probe("connect", GUEST4, "22", "60", "--source", FLOOD_SOURCE, "--timeout", "2")
    assert 1 <= flood["opened"] <= SSH_BURST + 1, f"{flood['opened']} of 60 fast connections in"
    assert sec.probe("connect", GUEST4, "22", "5", "--source", FLOOD_SOURCE)["opened"] == 0
    # Another source is not affected: the limit is per source address.
    assert sec.probe("connect", GUEST4, "22", "3", "--source", OTHER_SOURCE)["opened"] == 3
    assert "mixos-fw ssh-limit: " in sec.log()


def test_ping_is_answered_but_rate_limited(sec: SecureGuest) -> None:
    for host in (GUEST4, GUEST6):
        pings = sec.probe("ping", host, "60", "--timeout", "3")
        assert 1 <= pings["replies"] <= 10 + 5, f"{host}: {pings['replies']} of 60 pings answered"


def test_dropped_packets_are_logged_with_a_limit(sec: SecureGuest) -> None:
    log = sec.log()
    drops = [line for line in log.splitlines() if "mixos-fw drop: " in line]
    assert drops, "no 'mixos-fw drop:' lines in /var/log/messages after a full port scan"
    uptime_min = float(sec.sh("cut -d' ' -f1 /proc/uptime")) / 60
    # 12 per minute after a burst of 12, per rule; two rules (IPv4 and IPv6) log.
    bound = 2 * (12 + 12 * uptime_min) + 4
    assert len(drops) <= bound, f"{len(drops)} drop log lines in {uptime_min:.1f} min"


# ---- SSH authentication -------------------------------------------------------------

def add_test_user(sec: SecureGuest) -> None:
    if TEST_USER in sec.sh("cut -d: -f1 /etc/passwd").split():
        return
    sec.sh(f"""set -e
echo '{TEST_USER}:x:1000:1000:MixOS test user:/home/{TEST_USER}:/bin/sh' >> /etc/passwd
echo '{TEST_USER}:x:1000:' >> /etc/group
echo "{TEST_USER}:$(mkpasswd -m sha512 '{TEST_PASSWORD}'):20454:0:99999:7:::" >> /etc/shadow
mkdir -p /home/{TEST_USER}/.ssh
cp /root/.ssh/authorized_keys /home/{TEST_USER}/.ssh/
chown -R 1000:1000 /home/{TEST_USER}
chmod 700 /home/{TEST_USER} /home/{TEST_USER}/.ssh
chmod 600 /home/{TEST_USER}/.ssh/authorized_keys""")


def password_login(sec: SecureGuest, user: str, methods: str, *, host: str = "127.0.0.1",
                   port: int | None = None, outside: bool = False) -> tuple[int, str, bool]:
    """Try USER's correct password (METHODS: password / keyboard-interactive), answered
    by an askpass program. Returns (exit status, stderr, whether ssh asked for it)."""
    marker = sec.workdir / f"askpass-{user}-{methods}-{port}.asked"
    marker.unlink(missing_ok=True)
    askpass = sec.workdir / "askpass"
    askpass.write_text(f"#!/bin/sh\necho asked >> \"$ASKPASS_MARKER\"\necho '{TEST_PASSWORD}'\n")
    askpass.chmod(0o700)
    env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force",
               DISPLAY=":0", ASKPASS_MARKER=str(marker))
    argv = ["ssh", "-F", "/dev/null", "-p", str(port or sec.guest.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "PubkeyAuthentication=no", "-o", f"PreferredAuthentications={methods}",
            "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=15",
            "-o", "LogLevel=ERROR", f"{user}@{host}", "id -un"]
    if outside:
        argv = ["ip", "netns", "exec", sec.netns, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL, start_new_session=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr, marker.exists()


def test_password_login_with_the_correct_password_is_refused(sec: SecureGuest) -> None:
    add_test_user(sec)
    for methods in ("password", "keyboard-interactive"):
        for user in (TEST_USER, "root"):
            rc, out, asked = password_login(sec, user, methods)
            assert rc == 255 and "Permission denied (publickey)" in out, (user, methods, out)
            assert not asked, f"the server let {user} try a password ({methods})"


def test_control_sshd_with_passwords_on_accepts_that_password(sec: SecureGuest) -> None:
    """The password the test above tries is right: a second sshd in the guest that
    allows passwords lets the same user in with it (reached over the tap NIC)."""
    add_test_user(sec)
    # In the foreground (-D) under a shell that records its pid: the sshd profile
    # lets sshd write only its own pid file.
    sec.sh(f"iptables -I INPUT -p tcp --dport {CONTROL_SSHD_PORT} -j ACCEPT && "
           f"(/usr/sbin/sshd -D -p {CONTROL_SSHD_PORT} -o PidFile=none "
           "-o PasswordAuthentication=yes -o AuthenticationMethods=password "
           "-h /etc/ssh/ssh_host_ed25519_key </dev/null >/dev/null 2>&1 & "
           "echo $! > /run/sshd-control.pid) && sleep 2")
    try:
        rc, out, asked = password_login(sec, TEST_USER, "password", host=GUEST4,
                                        port=CONTROL_SSHD_PORT, outside=True)
    finally:
        sec.sh(f"kill $(cat /run/sshd-control.pid); "
               f"iptables -D INPUT -p tcp --dport {CONTROL_SSHD_PORT} -j ACCEPT")
    assert asked and rc == 0 and out.strip().endswith(TEST_USER), (rc, out)


def test_key_login_of_a_user_succeeds_and_proc_hides_other_users(sec: SecureGuest) -> None:
    add_test_user(sec)
    argv = [a if a != "root@127.0.0.1" else f"{TEST_USER}@127.0.0.1" for a in sec.ssh_argv()]
    proc = subprocess.run([*argv, "id -un; ls -d /proc/[0-9]* | wc -l; test -e /proc/1 && echo pid1; true"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[0] == TEST_USER
    assert "pid1" not in lines, "hidepid: an unprivileged user sees init's /proc entry"
    assert int(lines[1]) < 10, f"an unprivileged user sees {lines[1]} processes"


# ---- audit and logs -----------------------------------------------------------------

def test_audit_is_on_without_per_syscall_records(sec: SecureGuest) -> None:
    status = dict(line.split(None, 1) for line in sec.sh("auditctl -s").splitlines()
                  if len(line.split(None, 1)) == 2)
    assert status.get("enabled") == "1", status
    assert "-a never,task" in sec.sh("auditctl -l")


def test_logins_leave_audit_and_auth_records_in_var_log(sec: SecureGuest) -> None:
    # A terminal login (ssh -tt) is what sshd reports to the audit subsystem.
    subprocess.run([*sec.guest.ssh_argv("-tt"), "true"], capture_output=True, timeout=60,
                   stdin=subprocess.DEVNULL, check=False)
    password_login(sec, "nosuchuser", "password")
    deadline = time.monotonic() + 20
    while True:
        log = sec.log()
        ok = re.search(r"type=1112 .*op=login .*exe=\"/usr/sbin/sshd\".*res=success", log)
        failed = re.search(r"type=1112 .*op=login .*res=failed", log)
        if (ok and failed) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ok, "no audit USER_LOGIN success record in /var/log/messages"
    assert failed, "no audit USER_LOGIN failure record in /var/log/messages"
    assert re.search(r"sshd\[\d+\]: Accepted publickey for root from", log)
    assert re.search(r"sshd\[\d+\]: (Invalid user nosuchuser|Connection closed by invalid user)",
                     log)


BANNER = "Authorised use only."  # the first words of /etc/issue and /etc/issue.net


def test_login_banner_on_the_console_and_before_ssh_authentication(sec: SecureGuest) -> None:
    """getty shows /etc/issue before the console's login prompt; sshd sends
    /etc/issue.net before authentication, so even a refused client sees it."""
    console = sec.guest.vm.console().replace("\r", "")
    assert re.search(re.escape(BANNER) + r".*\n(.*\n){0,4}.*login:", console), (
        "no authorised-use statement before the console's login prompt")
    # The client prints the server's banner at LogLevel INFO (the harness's is ERROR).
    argv = ["LogLevel=INFO" if a == "LogLevel=ERROR" else a
            for a in sec.guest.ssh_argv("-o", "PubkeyAuthentication=no")]
    proc = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr
    assert BANNER in proc.stderr, f"no banner before authentication: {proc.stderr[-1000:]}"
    assert sec.sh("/usr/sbin/sshd -T | grep -i '^banner '").split() == ["banner",
                                                                        "/etc/issue.net"]


REMOTE_SYSLOG_PORT = 5514


def test_remote_logging_reaches_a_listener_on_the_network(sec: SecureGuest) -> None:
    """With remote= in /etc/mixos/syslog.conf, a message logged in the guest reaches
    a syslog listener on another host (the tap network's outside) and stays in
    /var/log/messages too; without it, nothing is sent."""
    marker = f"mixos-remote-log-{os.getpid()}-{time.monotonic_ns()}"

    def listen_while(guest_cmd: str, seconds: float) -> dict:
        listener = subprocess.Popen(
            ["ip", "netns", "exec", sec.netns, sys.executable, str(PROBE), "udplisten",
             OUTSIDE4, str(REMOTE_SYSLOG_PORT), str(seconds), marker],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None
            assert listener.stdout.readline().strip() == "ready", listener.stderr
            sec.sh(guest_cmd)
            out, err = listener.communicate(timeout=seconds + 30)
        finally:
            listener.kill()
        assert listener.returncode == 0, err
        return json.loads(out)

    # Control: the shipped configuration sends nothing.
    quiet = listen_while(f"logger -t mixos-test {marker}-local", 3)
    assert quiet["received"] == [], quiet
    sec.sh("cp /etc/mixos/syslog.conf /run/syslog.conf.orig && "
           f"echo 'remote={OUTSIDE4}:{REMOTE_SYSLOG_PORT}' >> /etc/mixos/syslog.conf && "
           "mixos-service restart syslogd")
    try:
        got = listen_while(f"logger -t mixos-test {marker}", 20)
    finally:
        sec.sh("cp /run/syslog.conf.orig /etc/mixos/syslog.conf && mixos-service restart syslogd")
    assert got["received"], f"the listener on {OUTSIDE4} received nothing holding {marker}"
    assert re.search(r"^<\d+>.*mixos-test.*" + re.escape(marker), got["received"][0]), got
    log = sec.log()
    assert marker in log and f"{marker}-local" in log, "a message missing from /var/log/messages"
    assert sec.sh("pidof syslogd").strip(), "syslogd did not come back after the test"


NTP_OFFSET = 300  # seconds the test's NTP server is ahead of the host


def guest_clock_offset(sec: SecureGuest) -> float:
    before = time.time()
    guest = float(sec.sh("date +%s").strip())
    return guest - (before + time.time()) / 2


def test_ntp_client_keeps_the_clock_confined_and_answers_nobody(sec: SecureGuest) -> None:
    """BusyBox ntpd runs confined from boot on; pointed at an NTP server on the
    outside network (ahead by NTP_OFFSET s), it sets the guest's clock through a
    firewall that has no rule for NTP (its replies pass as ESTABLISHED); the guest
    answers no NTP query itself."""
    pids = sec.sh("pidof ntpd; true").split()
    assert pids, "no ntpd running after boot"
    contexts = {sec.sh(f"cat /proc/{pid}/attr/current").strip() for pid in pids}
    assert contexts == {"ntpd (enforce)"}, f"ntpd runs as {contexts}"
    assert sec.probe("ntpquery", GUEST4)["reply"] is False, "the guest answered an NTP query"
    rules = sec.sh("iptables -S; ip6tables -S")
    assert not re.search(r"--[sd]port 123\b|ntp", rules), "the firewall has an NTP rule"
    assert abs(guest_clock_offset(sec)) < 30, "the guest's clock is off before the test"

    server = subprocess.Popen(
        ["ip", "netns", "exec", sec.netns, sys.executable, str(PROBE), "ntpserve", OUTSIDE4,
         "120", str(NTP_OFFSET)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    offset = 0.0
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", server.stderr
        sec.sh("cp /etc/mixos/ntp.conf /run/ntp.conf.orig && "
               f"sed -i 's/^servers=.*/servers=\"{OUTSIDE4}\"/' /etc/mixos/ntp.conf && "
               "mixos-service restart ntpd")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            offset = guest_clock_offset(sec)
            if abs(offset - NTP_OFFSET) < 10:
                break
            time.sleep(2)
        pid = sec.sh("pidof ntpd").split()[0]
        context = sec.sh(f"cat /proc/{pid}/attr/current").strip()
        cmd = sec.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    finally:
        sec.ssh(f"mixos-service stop ntpd; cp /run/ntp.conf.orig /etc/mixos/ntp.conf; "
                f"date -s @{int(time.time())} >/dev/null; mixos-service start ntpd", check=False)
        server.kill()
        server.communicate(timeout=30)
    assert abs(offset - NTP_OFFSET) < 10, (
        f"the guest's clock is {offset:+.0f} s off the host's, not {NTP_OFFSET:+} s: ntpd did "
        f"not follow {OUTSIDE4}\n" + sec.sh("mixos-service logs ntpd"))
    assert context == "ntpd (enforce)" and f"-p {OUTSIDE4}" in cmd, (context, cmd)
    assert "setting time to" in sec.sh("mixos-service logs ntpd -n 1000"), \
        "ntpd's step is not in its log (/var/log/sv/ntpd)"
    assert abs(guest_clock_offset(sec)) < 30, "the guest's clock was not put back"


def test_profiles_denied_nothing_during_the_tests(sec: SecureGuest) -> None:
    """A profile too tight breaks its service in ways other tests may not notice."""
    denials = [line for line in sec.log().splitlines()
               if 'apparmor="DENIED"' in line
               and any(f'profile="{p}"' in line for p in ("sshd", "udhcpc", "ntpd"))]
    assert not denials, "AppArmor denied:\n" + "\n".join(denials[:10])


def test_log_rotation_keeps_var_log_bounded(sec: SecureGuest) -> None:
    conf = dict(re.findall(r"^(\w+)=\"?([^\"\n]*)\"?$", sec.sh("cat /etc/mixos/logrotate.conf"),
                           re.MULTILINE))
    max_kb, keep, interval = int(conf["MAX_KB"]), int(conf["KEEP"]), int(conf["INTERVAL"])
    pid = sec.sh("cat /run/mixos-logrotate.pid").strip()
    assert "mixos-logrotate" in sec.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    # Fill the log past MAX_KB, then let the daemon (not a manual run) rotate it.
    sec.sh(f"i=0; while [ $i -lt {max_kb // 64 + 4} ]; do "
           "head -c 49152 /dev/zero | tr '\\0' 'x' | fold -w 96 | logger -t fill; "
           "i=$((i+1)); done", timeout=300)
    deadline = time.monotonic() + interval + 30
    while time.monotonic() < deadline:
        files = sec.sh("ls /var/log").split()
        if "messages.1" in files:
            break
        time.sleep(2)
    sizes = {name: int(size) for size, name in
             (line.split() for line in sec.sh("cd /var/log && wc -c messages*").splitlines()
              if not line.strip().endswith("total"))}
    assert "messages.1" in sizes, f"no rotation within {interval + 30} s: {sizes}"
    assert len([n for n in sizes if n.startswith("messages.")]) <= keep
    assert sum(sizes.values()) <= (max_kb * (keep + 1) + 512) * 1024, sizes
    modes = sec.sh("stat -c '%a %n' /var/log/messages*")
    assert all(line.startswith("600 ") for line in modes.splitlines()), modes


# ---- console and boot loader ----------------------------------------------------------

# grub-mkpasswd-pbkdf2 -c 1000 of GRUB_PASSWORD (the unit tests' HASH too).
GRUB_USER, GRUB_PASSWORD = "root", "mixos-test"
GRUB_HASH = ("grub.pbkdf2.sha512.1000.CECA39690D18C4502EB2BCF64572BAD1E6FB192702806161A4D29E5FA2"
             "39A0C3C402285B8358F7FB86FF8AE598A05D8747D7D4D295CB6A59A5133401295C1B73.A433A411E1"
             "C3BA96D9800A3B26549CA10D20A18D72603013FA938390AA3772F727CF938FB1736A3E452A9ED4E3D8"
             "4AC4BB7D6106F42D54B5A04CA891447CE23D")
# QEMU key names of the characters typed at GRUB's prompts.
QEMU_KEYS = {"-": "minus", "\n": "ret"}


def type_keys(vm: VM, text: str) -> None:
    for ch in text:
        vm.sendkey(QEMU_KEYS.get(ch, ch))


def editing_is_refused(vm: VM) -> None:
    """Open GRUB's menu, press 'e' on the default entry, answer a wrong user and
    password: refused, no editor. Leaves the menu shown again."""
    vm.open_boot_menu()
    vm.wait_for(r"rescue shell \(initramfs\)", 30)
    mark = vm.mark()
    vm.sendkey("e")
    vm.wait_for(r"Enter username:", 30, since=mark)
    type_keys(vm, "nobody\n")
    vm.wait_for(r"Enter password:", 30, since=mark)
    type_keys(vm, "wrong\n")
    denied = vm.wait_for(r"error: access denied", 30, since=mark)
    # GRUB draws the menu again (no editor: it would show the entry's "setparams").
    vm.wait_for(r"rescue shell \(initramfs\)", 30, since=mark + denied.end())
    assert "setparams" not in vm.console()[mark:], "GRUB opened the editor without a password"


def test_live_iso_built_with_a_grub_password_guards_editing(
        start_machine: Callable[..., Guest], vm_workdir: Path, sockets_dir: Path,
        nocloud_seed: Path) -> None:
    """`mixbuild iso --grub-password-hash`: the live medium's menu refuses editing
    without the password, and its default entry boots by itself, locked."""
    iso_path = vm_workdir / "mixos-grub-password.iso"
    host_run([sys.executable, "-m", "mixbuild", "iso", "--no-repo", "--grub-password-hash",
              GRUB_HASH, "-o", str(iso_path)], timeout=600,
             env=dict(os.environ, PYTHONPATH=str(PROJECT / "src")), cwd=PROJECT)
    monitor = sockets_dir / "hmp"

    def machine(port: int, accel: str) -> Machine:
        return Machine(accel=accel, iso=iso_path, ssh_port=port, monitor=monitor,
                       disks=(nocloud_seed,))

    g = start_machine(machine, wait_login=False, wait_ssh=False)
    editing_is_refused(g.vm)
    mark = g.vm.mark()
    g.vm.sendkey("home")
    g.vm.sendkey("ret")  # the default entry: no password asked
    g.vm.wait_for(r"login: ?", 180, since=mark)
    assert "Enter username:" not in g.vm.console()[mark:]
    g.wait_ssh()
    assert "mixos.locked" in g.sh("cat /proc/cmdline").split()


def test_grub_password_guards_editing_and_rescue(start_machine: Callable[..., Guest],
                                                 vm_workdir: Path, viso_image: Path,
                                                 nocloud_seed: Path, sockets_dir: Path) -> None:
    """An installed system (the VISO) given a GRUB password in /etc/mixos/boot.json:
    the default entry boots by itself, and the initramfs's console menu offers no
    shell; editing an entry asks for the superuser, and the rescue entry boots only
    with the password."""
    disk = overlay(viso_image, vm_workdir / "security-grub-password.qcow2")
    monitor = sockets_dir / "hmp"

    def machine(port: int, accel: str) -> Machine:
        return Machine(accel=accel, drives=(Drive(disk),), ssh_port=port, disks=(nocloud_seed,),
                       monitor=monitor)

    g = start_machine(machine, name="grub-password-set")
    g.sh(f"""python3 -c '
import json; p = "/etc/mixos/boot.json"; d = json.load(open(p))
d["grub_password"] = "{GRUB_HASH}"; json.dump(d, open(p, "w"))' && mixos-boot update""")
    cfg = g.sh("stat -c %a /boot/grub/grub.cfg; cat /boot/grub/grub.cfg")
    assert cfg.startswith("600\n") and f"password_pbkdf2 {GRUB_USER} {GRUB_HASH}" in cfg, cfg[:600]
    assert g.poweroff() == 0

    # 1. Nobody at the keyboard: the default entry boots (--unrestricted), locked.
    #    A key on the serial console opens the initramfs's menu: no rescue in it,
    #    and "3" boots normally.
    g = start_machine(machine, name="grub-password-default", wait_login=False, wait_ssh=False)
    g.vm.open_console_menu()
    g.vm.wait_for(r"choice \[1\]: ", 30)
    menu = g.vm.console()[g.vm.console().rindex("boot menu (a key was pressed"):]
    assert "3  rescue shell" not in menu and "no rescue shell" in menu, menu
    mark = g.vm.mark()
    g.vm.type("3\r")
    g.vm.wait_for(r"normal boot", 30, since=mark)
    g.wait_login()
    g.wait_ssh()
    assert "mixos.locked" in g.sh("cat /proc/cmdline").split()
    assert "'exit' continues the boot" not in g.vm.console()
    assert g.poweroff() == 0

    # 2. At the menu: editing the default entry ('e') asks for the superuser; a
    #    wrong answer is refused. The rescue entry asks too; with the password it
    #    boots to the initramfs's shell.
    g = start_machine(machine, name="grub-password-menu", wait_login=False, wait_ssh=False)
    editing_is_refused(g.vm)
    g.vm.sendkey("end")  # the rescue entry is the last
    mark = g.vm.mark()
    g.vm.sendkey("ret")
    g.vm.wait_for(r"Enter username:", 30, since=mark)
    type_keys(g.vm, f"{GRUB_USER}\n")
    g.vm.wait_for(r"Enter password:", 30, since=mark)
    type_keys(g.vm, f"{GRUB_PASSWORD}\n")
    g.vm.wait_for(r"'exit' continues the boot", 120, since=mark)
    mark = g.vm.mark()
    g.vm.type("cat /proc/cmdline\r")
    g.vm.wait_for(r" rescue", 30, since=mark)
    assert "mixos.locked" not in g.vm.console()[mark:]


# ---- image and cost -----------------------------------------------------------------

def test_image_elf_files_do_not_regress_against_baseline() -> None:
    rootfs = ARTIFACTS / "rootfs"
    if not rootfs.is_dir():
        pytest.fail(f"{rootfs} is missing: run 'make rootfs'", pytrace=False)
    results = elfhardening.scan(rootfs)
    print("\n" + elfhardening.table(results) + "\n" + elfhardening.summary(results))
    baseline = PROJECT / "tests" / "unit" / "data" / "elf_hardening_baseline.json"
    result = elfhardening.compare(results, json.loads(baseline.read_text()))
    assert not result.regressions, "\n".join(result.regressions)


def test_hardening_boot_cost(sec: SecureGuest, boot_metrics: dict[str, object]) -> None:
    """Seconds each mixos-hardening boot step takes when run again (idempotent)."""
    out = sec.sh("for s in S01hardening S20audit S21apparmor S22firewall; do "
                 "a=$(cut -d' ' -f1 /proc/uptime); /etc/init.d/$s start >/dev/null 2>&1; "
                 "b=$(cut -d' ' -f1 /proc/uptime); echo $s $a $b; done")
    for line in out.splitlines():
        name, start, end = line.split()
        suffix = "" if sec.medium == "iso" else f"_{sec.medium}"
        boot_metrics[f"security_{name}{suffix}_s"] = round(float(end) - float(start), 2)
