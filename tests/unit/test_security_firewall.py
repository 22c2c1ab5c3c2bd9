"""The firewall rules file: both families parse (iptables-restore --test), the
policy is default-deny, and, loaded by the real loader (mixos-firewall under
BusyBox sh) into a network namespace of this host's kernel, it behaves as
documented when probed from a second namespace over a veth pair: only SSH gets
through, and a source opening SSH connections faster than the limit is dropped
while another source still gets in. Addresses are from the documentation ranges
(192.0.2.0/24, 2001:db8::/32) inside namespaces that exist only for the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from security_policy import FIREWALL_RULES, PROJECT, firewall_sections

from mixadmin.firewall import Rule, parse_rule, render_rules

LOADER = PROJECT / "packages" / "mixos-hardening" / "files" / "mixos-firewall"
RATE_BURST = 20  # --hashlimit-burst of the SSH rule


def run(cmd: list[str], timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                            **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr}"
    return result


def need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "iptables-restore", "ip6tables-restore", "unshare", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def test_rules_file_has_both_families_with_default_deny() -> None:
    sections = firewall_sections(FIREWALL_RULES.read_text())
    assert set(sections) == {"ipv4", "ipv6"}
    for fam, text in sections.items():
        lines = text.splitlines()
        assert ":INPUT DROP [0:0]" in lines, f"{fam}: INPUT policy is not DROP"
        assert ":FORWARD DROP [0:0]" in lines, f"{fam}: FORWARD policy is not DROP"
        assert "-A INPUT -i lo -j ACCEPT" in lines
        assert any("--ctstate ESTABLISHED,RELATED -j ACCEPT" in ln for ln in lines)
        ssh = [ln for ln in lines if "--dport 22" in ln]
        assert ssh and all("-j MIXOS-SSH" in ln for ln in ssh), f"{fam}: SSH not rate-limited"
        assert any("hashlimit-mode srcip" in ln and "-j ACCEPT" in ln for ln in lines)
        echo = [ln for ln in lines if "echo-request" in ln and "-j ACCEPT" in ln]
        assert echo and all("-m limit" in ln for ln in echo), f"{fam}: ping not limited"
        # Limited before conntrack: later requests of one ping run are ESTABLISHED.
        established = next(i for i, ln in enumerate(lines) if "ESTABLISHED" in ln)
        assert all(lines.index(ln) < established for ln in echo), f"{fam}: ping limit after ct"
        logs = [ln for ln in lines if "-j LOG" in ln]
        assert logs and all("-m limit" in ln for ln in logs), f"{fam}: LOG without a limit"
        accepts = [ln for ln in lines if ln.startswith("-A INPUT") and ln.endswith("-j ACCEPT")]
        for ln in accepts:  # every accepted new flow is named here, nothing else
            assert any(s in ln for s in ("-i lo", "ESTABLISHED", "echo-request", "--sport 67",
                                         "router-advertisement", "neighbour-")), ln


def test_both_families_parse_with_iptables_restore_test() -> None:
    need_root_tools()
    sections = firewall_sections(FIREWALL_RULES.read_text())
    for fam, tool in (("ipv4", "iptables-restore"), ("ipv6", "ip6tables-restore")):
        run(["unshare", "--net", tool, "--test"], input=sections[fam])


def test_loader_check_mode_rejects_a_broken_file(tmp_path: Path) -> None:
    need_root_tools()
    broken = tmp_path / "rules"
    broken.write_text(FIREWALL_RULES.read_text().replace("--hashlimit-upto", "--hashlimit-upt0"))
    result = subprocess.run(["unshare", "--net", "busybox", "sh", str(LOADER), "check"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"MIXOS_FIREWALL_RULES": str(broken), "PATH": os.environ["PATH"]})
    assert result.returncode == 1
    assert "the ipv4 rules do not parse" in result.stderr


# ---- behaviour in two namespaces -------------------------------------------------

PROBE = textwrap.dedent(r"""
    import json, socket, sys, concurrent.futures as cf
    host, ports, timeout, src = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    def probe(port):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if src:
                s.bind((src, 0))
            s.connect((host, port))
            return port, "open"
        except ConnectionRefusedError:
            return port, "refused"
        except OSError:
            return port, "filtered"
        finally:
            s.close()
    with cf.ThreadPoolExecutor(64) as pool:
        print(json.dumps(dict(pool.map(probe, ports))))
""")

LISTEN = textwrap.dedent(r"""
    import socket, sys, time
    socks = []
    for port in map(int, sys.argv[1:]):
        for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, port)); s.listen(128); socks.append(s)
    print("ready", flush=True)
    time.sleep(120)
""")


class Netns:
    """Two namespaces joined by a veth pair: 'guest' (firewalled, 192.0.2.2 and
    2001:db8::2) and 'scanner' (192.0.2.1, .3 and 2001:db8::1)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.guest, self.scanner = f"mixsec-g-{tag}", f"mixsec-s-{tag}"
        self.listener: subprocess.Popen[str] | None = None

    def up(self) -> None:
        for ns in (self.guest, self.scanner):
            run(["ip", "netns", "add", ns])
            self.exec(ns, ["ip", "link", "set", "lo", "up"])
        run(["ip", "link", "add", "mxg0", "netns", self.guest, "type", "veth",
             "peer", "name", "mxs0", "netns", self.scanner])
        for ns, dev, addrs in ((self.guest, "mxg0", ["192.0.2.2/24", "2001:db8::2/64"]),
                               (self.scanner, "mxs0", ["192.0.2.1/24", "192.0.2.3/24",
                                                       "2001:db8::1/64"])):
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []
                self.exec(ns, ["ip", "addr", "add", addr, "dev", dev, *extra])
            self.exec(ns, ["ip", "link", "set", dev, "up"])

    def exec(self, ns: str, cmd: list[str], timeout: float = 60,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *cmd], timeout=timeout, env=env)

    def listen(self, ports: list[int]) -> None:
        self.listener = subprocess.Popen(
            ["ip", "netns", "exec", self.guest, sys.executable, "-c", LISTEN, *map(str, ports)],
            stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout is not None
        assert self.listener.stdout.readline().strip() == "ready"

    def probe(self, host: str, ports: list[int], timeout: float = 1.0,
              source: str = "") -> dict[int, str]:
        out = self.exec(self.scanner, [sys.executable, "-c", PROBE, host, json.dumps(ports),
                                       str(timeout), source], timeout=120).stdout
        return {int(k): v for k, v in json.loads(out).items()}

    def down(self) -> None:
        if self.listener is not None:
            self.listener.kill()
            self.listener.wait(timeout=10)
        for ns in (self.guest, self.scanner):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30,
                           check=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    need_root_tools()
    pair = Netns()
    try:
        pair.up()
        yield pair
    finally:
        pair.down()


def load_rules(netns: Netns) -> None:
    netns.exec(netns.guest, ["busybox", "sh", str(LOADER), "start"],
               env={"MIXOS_FIREWALL_RULES": str(FIREWALL_RULES), "PATH": os.environ["PATH"]})


def test_only_ssh_is_reachable_and_loopback_is_not_filtered(netns: Netns) -> None:
    ports = [22, 80, 443, 2222, 8080]
    netns.listen(ports)
    # Control: without the firewall, every listener answers.
    assert set(netns.probe("192.0.2.2", ports).values()) == {"open"}
    load_rules(netns)
    for host in ("192.0.2.2", "2001:db8::2"):
        seen = netns.probe(host, ports + [23, 5000])
        assert seen[22] == "open", f"{host}: SSH blocked"
        others = {p: s for p, s in seen.items() if p != 22}
        assert set(others.values()) == {"filtered"}, f"{host}: not silently dropped: {others}"
    # Inside the firewalled namespace, loopback still reaches every service.
    inner = netns.exec(netns.guest, [sys.executable, "-c", PROBE, "127.0.0.1", "[8080]", "1", ""])
    assert '"open"' in inner.stdout


def test_ssh_rate_limit_drops_a_fast_source_but_not_another(netns: Netns) -> None:
    netns.listen([22])
    load_rules(netns)
    # 50 connection attempts at once from 192.0.2.1: only the burst gets through.
    opened = connect_many(netns, "192.0.2.2", 50, "192.0.2.1")
    assert RATE_BURST // 2 <= opened <= RATE_BURST + 1, f"{opened} of 50 fast connections got in"
    # The limit is per source: another address is not affected.
    assert connect_many(netns, "192.0.2.2", 3, "192.0.2.3") == 3
    assert connect_many(netns, "2001:db8::2", 3, "") == 3


CONNECT_MANY = textwrap.dedent(r"""
    import socket, sys, concurrent.futures as cf
    host, n, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    def one(_):
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1.5)
        try:
            if src: s.bind((src, 0))
            s.connect((host, 22)); return 1
        except OSError:
            return 0
        finally:
            s.close()
    with cf.ThreadPoolExecutor(n) as pool:
        print(sum(pool.map(one, range(n))))
""")


def connect_many(netns: Netns, host: str, n: int, source: str) -> int:
    out = netns.exec(netns.scanner, [sys.executable, "-c", CONNECT_MANY, host, str(n), source])
    return int(out.stdout)


PROBE_SCRIPT = PROJECT / "tests" / "vm" / "security_probe.py"


def test_ping_is_answered_but_limited(netns: Netns) -> None:
    def ping(host: str, n: int) -> int:
        out = netns.exec(netns.scanner, [sys.executable, str(PROBE_SCRIPT), "ping", host, str(n),
                                         "--timeout", "2"]).stdout
        return int(json.loads(out)["replies"])

    assert ping("192.0.2.2", 60) == 60  # control: no firewall yet
    load_rules(netns)
    for host in ("192.0.2.2", "2001:db8::2"):
        replies = ping(host, 60)
        assert 1 <= replies <= 10 + 5, f"{host}: {replies} of 60 back-to-back pings answered"


def test_rules_that_fail_to_load_leave_the_host_closed(netns: Netns, tmp_path: Path) -> None:
    netns.listen([22])
    broken = tmp_path / "rules"
    broken.write_text(FIREWALL_RULES.read_text().replace("--hashlimit-upto", "--hashlimit-upt0"))
    result = subprocess.run(["ip", "netns", "exec", netns.guest, "busybox", "sh", str(LOADER),
                             "start"], capture_output=True, text=True, timeout=60, check=False,
                            env={"MIXOS_FIREWALL_RULES": str(broken), "PATH": os.environ["PATH"]})
    assert result.returncode == 1
    assert "all inbound ipv4 traffic except loopback is dropped" in result.stderr
    policy = netns.exec(netns.guest, ["iptables", "-S", "INPUT"]).stdout.splitlines()
    assert policy[0] == "-P INPUT DROP" and "-A INPUT -i lo -j ACCEPT" in policy
    assert netns.probe("192.0.2.2", [22])[22] == "filtered"


# netavark 1.4's rules for a bridge network with a published port (podman run -p 8080:80),
# as it adds them once MixOS's rules are loaded: FORWARD jumps to its chain first.
NETAVARK = {
    "ipv4": ("10.88.0.0/16", "10.88.0.1/16", "10.88.0.2/16", "10.88.0.2"),
    "ipv6": ("fd00:88::/64", "fd00:88::1/64", "fd00:88::2/64", "[fd00:88::2]"),
}


def netavark_rules(family: str) -> list[list[str]]:
    net, _, _, target = NETAVARK[family]
    return [
        ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL",
         "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", f"{target}:80"],
        ["-t", "nat", "-A", "POSTROUTING", "-s", net, "-j", "MASQUERADE"],
        ["-N", "NETAVARK_FORWARD"],
        ["-I", "FORWARD", "1", "-j", "NETAVARK_FORWARD"],
        ["-A", "NETAVARK_FORWARD", "-d", net, "-m", "conntrack",
         "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-A", "NETAVARK_FORWARD", "-s", net, "-j", "ACCEPT"],
    ]


def test_published_port_is_closed_until_allowed_and_containers_still_reach_out(
        netns: Netns, tmp_path: Path) -> None:
    """A third namespace plays a container behind the firewalled one (a veth, forwarding
    on, netavark's NAT and FORWARD rules): the scanner reaches its port 80 through the
    published 8080 only after 8080/tcp is allowed, in both families; a rule for another
    source keeps it closed; the container's own connections out (MASQUERADE) pass."""
    box = f"{netns.guest}-c"
    run(["ip", "netns", "add", box])
    try:
        netns.exec(box, ["ip", "link", "set", "lo", "up"])
        run(["ip", "link", "add", "podman0", "netns", netns.guest, "type", "veth",
             "peer", "name", "eth0", "netns", box])
        for family, (_, gateway, address, _) in NETAVARK.items():
            extra = ["nodad"] if family == "ipv6" else []
            netns.exec(netns.guest, ["ip", "addr", "add", gateway, "dev", "podman0", *extra])
            netns.exec(box, ["ip", "addr", "add", address, "dev", "eth0", *extra])
        netns.exec(netns.guest, ["ip", "link", "set", "podman0", "up"])
        netns.exec(box, ["ip", "link", "set", "eth0", "up"])
        netns.exec(box, ["ip", "route", "add", "default", "via", "10.88.0.1"])
        netns.exec(box, ["ip", "-6", "route", "add", "default", "via", "fd00:88::1"])
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
            netns.exec(netns.guest, ["sysctl", "-q", "-w", f"{key}=1"])
        listener = subprocess.Popen(["ip", "netns", "exec", box, sys.executable, "-c", LISTEN,
                                     "80", "22"], stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
            allowed = tmp_path / "allowed.rules"
            env = {"MIXOS_FIREWALL_RULES": str(FIREWALL_RULES), "MIXOS_FIREWALL_ALLOWED":
                   str(allowed), "PATH": os.environ["PATH"]}

            def load(rules: list[Rule]) -> None:
                allowed.write_text(render_rules(rules))
                netns.exec(netns.guest, ["busybox", "sh", str(LOADER), "start"], env=env)
                for family, tool in (("ipv4", "iptables"), ("ipv6", "ip6tables")):
                    netns.exec(netns.guest, [tool, "-t", "nat", "-F"])
                    for rule in netavark_rules(family):
                        netns.exec(netns.guest, [tool, *rule])

            def published() -> list[str]:
                return [netns.probe(h, [8080], timeout=1.5)[8080]
                        for h in ("192.0.2.2", "2001:db8::2")]

            def egress() -> list[str]:
                # The container connects out to port 9 of the scanner, where nothing
                # listens: "refused" is the answer of a host it reached.
                out = netns.exec(box, [sys.executable, "-c", PROBE, "192.0.2.1", "[9]", "1.5",
                                       ""]).stdout
                out6 = netns.exec(box, [sys.executable, "-c", PROBE, "2001:db8::1", "[9]",
                                        "1.5", ""]).stdout
                return [json.loads(out)["9"], json.loads(out6)["9"]]

            load([])
            assert published() == ["filtered", "filtered"]
            assert egress() == ["refused", "refused"]
            load([Rule(8080, "tcp")])
            assert published() == ["open", "open"]
            load([parse_rule(["8080/tcp", "from", "198.51.100.0/24"])])
            assert published() == ["filtered", "filtered"]
            load([parse_rule(["8080/tcp", "from", "2001:db8::/64"])])
            assert published() == ["filtered", "open"]
            assert egress() == ["refused", "refused"]
        finally:
            listener.kill()
            listener.wait(timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", box], capture_output=True, timeout=30, check=False)
