"""mixos-service and mixos-firewall allow/deny/list (src/mixadmin): the command-line
parsing, a service's conf, runsv's status record, the firewall's rule logic and the
generated rules, loaded by the real loader (BusyBox sh, iptables-restore) in a
throw-away network namespace; and what mix does with a package's service."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from security_policy import FIREWALL_RULES, PROJECT

from mix import services as mix_services
from mixadmin import firewall, firewall_cli, runit, service_cli, services
from mixadmin.firewall import Rule, RuleError
from mixadmin.services import ServiceError

LOADER = PROJECT / "packages" / "mixos-hardening" / "files" / "mixos-firewall"


# ---- service definitions -----------------------------------------------------------

def test_conf_is_parsed_with_defaults() -> None:
    d = services.parse_conf("nginx", '# web\ndescription="nginx web server"\nenable=no\n'
                            'ports="80/tcp 443/tcp"\nreload=SIGHUP\n')
    assert d.description == "nginx web server" and not d.enable
    assert d.ports == ("80/tcp", "443/tcp") and d.reload == "HUP"
    assert d.log and not d.early and d.started_by == ""
    assert services.parse_conf("x", "").enable is False


@pytest.mark.parametrize("text, words", [
    ("enabled=yes\n", "KEY one of"),
    ("enable=maybe\n", "use yes or no"),
    ('ports="80"\n', "PORT/tcp"),
    ('ports="70000/tcp"\n', "PORT 1-65535"),
    ("reload=TERM\n", "use one of HUP"),
    ("just words\n", "expected KEY=VALUE"),
])
def test_bad_conf_names_the_line_and_the_fix(text: str, words: str) -> None:
    with pytest.raises(ServiceError, match=words):
        services.parse_conf("svc", text)


def test_shipped_definitions_parse_and_run_in_the_foreground() -> None:
    defs = [PROJECT / "packages/mixos-init/files/etc/sv", PROJECT / "packages/nginx/files"]
    found = {p.parent.name if p.parent.name != "sv" else "nginx": p.parent
             for root in defs for p in root.glob("*/run")}
    assert {"syslogd", "klogd", "udhcpc", "sshd", "ntpd", "nginx"} <= set(found)
    for name, d in found.items():
        conf = d / "conf"
        parsed = services.parse_conf(name, conf.read_text() if conf.exists() else "")
        run = (d / "run").read_text()
        assert os.access(d / "run", os.X_OK), f"{name}: run is not executable"
        assert run.startswith("#!/bin/sh") and "exec " in run, f"{name}: run must exec"
        if name == "nginx":
            assert parsed.ports == ("80/tcp",) and not parsed.enable


def test_unknown_service_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "sshd").mkdir()
    (tmp_path / "sshd" / "run").write_text("#!/bin/sh\n")
    with pytest.raises(ServiceError, match="services: sshd"):
        services.load("nginx", tmp_path)
    with pytest.raises(ServiceError, match="not a service name"):
        services.load("../etc", tmp_path)


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["start"], ["enable"],
                                  ["logs", "x", "-n", "-3"], ["stop", "a", "b"]])
def test_bad_command_lines_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        service_cli.parse_args(argv)
    assert e.value.code == 2


def test_command_lines_parse() -> None:
    a = service_cli.parse_args(["enable", "--now", "nginx"])
    assert (a.command, a.name, a.now) == ("enable", "nginx", True)
    a = service_cli.parse_args(["logs", "sshd", "-n", "5", "-f"])
    assert (a.lines, a.follow) == (5, True)


# ---- runsv's status record ----------------------------------------------------------

def status_record(start: int, pid: int, want: bytes, state: int) -> bytes:
    return (struct.pack(">QI", start + runit.TAI_OFFSET, 500_000_000) + struct.pack("<I", pid)
            + bytes([0]) + want + bytes([0, state]))


def test_status_record_decodes() -> None:
    state, pid, since, want = runit.decode_status(status_record(1_700_000_000, 4242, b"u", 1))
    assert (state, pid, want) == ("run", 4242, "up")
    assert since == pytest.approx(1_700_000_000.5)
    with pytest.raises(ValueError):
        runit.decode_status(b"short")


def test_failing_needs_two_quick_exits_and_ends_once_it_stays_up() -> None:
    now = 1000.0
    base = {"supervised": True, "pid": 1, "want": "up", "restarts": 3, "last_exit": ""}
    assert runit.Status(state="finish", since=now, fails=1, **base).label(now) == "restarting"
    assert runit.Status(state="finish", since=now, fails=2, **base).label(now) == "failing"
    assert runit.Status(state="run", since=now - 2, fails=3, **base).label(now) == "failing"
    assert runit.Status(state="run", since=now - 60, fails=3, **base).label(now) == "running"
    assert runit.Status(False, "-", 0, 0, "", 0, 0, "").label(now) == "stopped"
    assert runit.describe_exit("1 -1 9 80") == "killed by signal 9 after 80 s"
    assert runit.describe_exit("1 3 0 0") == "exited with status 3 after 0 s"


# ---- firewall rules -----------------------------------------------------------------

@pytest.mark.parametrize("words, text, families", [
    (["80/tcp"], "80/tcp", ("ipv4", "ipv6")),
    (["80"], "80/tcp", ("ipv4", "ipv6")),
    (["53/udp", "from", "10.0.0.0/8"], "53/udp from 10.0.0.0/8", ("ipv4",)),
    (["5432", "from", "2001:db8::/32"], "5432/tcp from 2001:db8::/32", ("ipv6",)),
    (["22/tcp", "from", "192.0.2.7"], "22/tcp from 192.0.2.7/32", ("ipv4",)),
])
def test_rules_parse(words: list[str], text: str, families: tuple[str, ...]) -> None:
    rule = firewall.parse_rule(words)
    assert str(rule) == text and rule.families == families


@pytest.mark.parametrize("words, message", [
    (["0/tcp"], "1 to 65535"), (["65536"], "1 to 65535"), (["http"], "1 to 65535"),
    (["80/sctp"], "tcp or udp"), (["80", "to", "10.0.0.0/8"], "expected PORT"),
    (["80", "from"], "expected PORT"), (["80", "from", "10.0.0.1/8"], "not an address"),
    (["80", "from", "example.org"], "not an address"),
])
def test_bad_rules_say_what_is_accepted(words: list[str], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        firewall.parse_rule(words)


def test_allow_twice_and_deny_of_nothing_are_refused() -> None:
    web = Rule(80, "tcp")
    rules = firewall.add([], web)
    with pytest.raises(RuleError, match="already allowed"):
        firewall.add(rules, web)
    with pytest.raises(RuleError, match="nothing to deny"):
        firewall.remove(rules, Rule(443, "tcp"), any_source=True)


def test_deny_without_from_drops_every_rule_of_the_port() -> None:
    net = firewall.parse_rule(["80", "from", "10.0.0.0/8"]).source
    rules = [Rule(80, "tcp"), Rule(80, "tcp", net), Rule(80, "udp")]
    assert firewall.remove(rules, Rule(80, "tcp", net), any_source=False) == \
        [Rule(80, "tcp"), Rule(80, "udp")]
    assert firewall.remove(rules, Rule(80, "tcp"), any_source=True) == [Rule(80, "udp")]


def test_allowed_file_round_trips_and_names_a_bad_line(tmp_path: Path) -> None:
    rules = [firewall.parse_rule(w.split()) for w in ("80/tcp", "53/udp from 192.0.2.0/24")]
    assert firewall.parse_allowed(firewall.render_list(rules)) == rules
    with pytest.raises(RuleError, match="line 2"):
        firewall.parse_allowed("80/tcp\n80/icmp\n", tmp_path / "allowed")


def test_generated_rules_go_to_the_allow_chain_per_family() -> None:
    rules = [firewall.parse_rule(w.split()) for w in ("80/tcp", "53/udp from 192.0.2.0/24")]
    text = firewall.render_rules(rules)
    v4 = text.split("# @family ipv6")[0]
    v6 = text.split("# @family ipv6")[1]
    assert "-A MIXOS-ALLOW -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT" in v4
    assert "-s 192.0.2.0/24 -p udp -m udp --dport 53" in v4
    assert "--dport 80" in v6 and "--dport 53" not in v6


def test_generated_rules_open_the_published_port_by_its_original_destination() -> None:
    rules = [firewall.parse_rule(w.split()) for w in ("8080/tcp", "53/udp from 2001:db8::/32")]
    v4, v6 = firewall.render_rules(rules).split("# @family ipv6")
    assert ("-A MIXOS-PUBLISHED -p tcp -m conntrack --ctorigdstport 8080 -j ACCEPT"
            in v4.splitlines())
    assert "--ctorigdstport 53" not in v4
    assert ("-A MIXOS-PUBLISHED -p udp -m conntrack --ctorigsrc 2001:db8::/32 "
            "--ctorigdstport 53 -j ACCEPT") in v6.splitlines()


def test_policy_ports_are_open_and_others_closed(tmp_path: Path) -> None:
    assert firewall.policy_ports(FIREWALL_RULES.read_text()) == {"22/tcp", "68/udp"}
    allowed = tmp_path / "allowed"
    allowed.write_text("8080/tcp from 192.0.2.0/24\n")
    assert firewall.is_open("22/tcp", allowed, FIREWALL_RULES)
    assert firewall.is_open("8080/tcp", allowed, FIREWALL_RULES)
    assert not firewall.is_open("80/tcp", allowed, FIREWALL_RULES)


def need_netns_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("iptables-restore", "ip6tables-restore", "unshare", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture
def netns_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real loader with a copy of the policy, each run in a new network namespace."""
    need_netns_tools()
    rules = tmp_path / "rules"
    shutil.copy(FIREWALL_RULES, rules)
    wrapper = tmp_path / "loader"
    wrapper.write_text(f"#!/bin/sh\nMIXOS_FIREWALL_RULES={rules} exec unshare --net "
                       f"busybox sh {LOADER} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(firewall_cli, "LOADER", str(wrapper))
    return tmp_path


def test_allow_and_deny_save_rules_the_loader_loads(netns_loader: Path) -> None:
    allowed = netns_loader / "allowed"
    for cmd in (["allow", "80/tcp"], ["allow", "5432", "from", "2001:db8::/32"]):
        firewall_cli.run(firewall_cli.parse_args(cmd), allowed, netns_loader / "rules")
    generated = (netns_loader / "allowed.rules").read_text()
    assert generated == firewall.render_rules(firewall.read_allowed(allowed))
    out = firewall_cli.run(firewall_cli.parse_args(["list"]), allowed, netns_loader / "rules")
    assert out[0].startswith("22/tcp (the policy")
    assert out[-2:] == ["80/tcp", "5432/tcp from 2001:db8::/32"]
    firewall_cli.run(firewall_cli.parse_args(["deny", "80/tcp"]), allowed, netns_loader / "rules")
    assert [str(r) for r in firewall.read_allowed(allowed)] == ["5432/tcp from 2001:db8::/32"]
    assert not list(netns_loader.glob("*.new")) and not list(netns_loader.glob("*.old"))


def test_rules_the_loader_refuses_change_nothing(netns_loader: Path) -> None:
    allowed = netns_loader / "allowed"
    rules = netns_loader / "rules"
    firewall_cli.run(firewall_cli.parse_args(["allow", "80/tcp"]), allowed, rules)
    before = allowed.read_text(), (netns_loader / "allowed.rules").read_text()
    # The IPv6 half of the policy lacks the chain: iptables-restore --test passes,
    # the load fails, the previous rules come back.
    v4, v6 = rules.read_text().split("# @family ipv6")
    rules.write_text(v4 + "# @family ipv6" + v6.replace(":MIXOS-ALLOW - [0:0]\n", ""))
    with pytest.raises(firewall_cli.Failed, match="previous ones are back"):
        firewall_cli.run(firewall_cli.parse_args(["allow", "443/tcp"]), allowed, rules)
    assert (allowed.read_text(), (netns_loader / "allowed.rules").read_text()) == before
    # A policy without the MIXOS-ALLOW chain (an edited one): refused before anything.
    rules.write_text(rules.read_text().replace(":MIXOS-ALLOW - [0:0]\n", "")
                     .replace("-A INPUT -j MIXOS-ALLOW\n", ""))
    with pytest.raises(firewall_cli.Failed, match="no MIXOS-ALLOW chain"):
        firewall_cli.run(firewall_cli.parse_args(["allow", "443/tcp"]), allowed, rules)
    assert (allowed.read_text(), (netns_loader / "allowed.rules").read_text()) == before
    # One without MIXOS-PUBLISHED (a policy from before published ports were closed).
    shutil.copy(FIREWALL_RULES, rules)
    rules.write_text(rules.read_text().replace(":MIXOS-PUBLISHED - [0:0]\n", ""))
    with pytest.raises(firewall_cli.Failed, match="no MIXOS-PUBLISHED chain"):
        firewall_cli.run(firewall_cli.parse_args(["allow", "443/tcp"]), allowed, rules)
    assert (allowed.read_text(), (netns_loader / "allowed.rules").read_text()) == before


def test_loader_adds_the_allowed_lines_inside_each_family(netns_loader: Path) -> None:
    allowed_rules = netns_loader / "allowed.rules"
    allowed_rules.write_text(firewall.render_rules([Rule(80, "tcp")]))
    script = (f". {LOADER}; with_allowed ipv4; with_allowed ipv6")
    out = subprocess.run(["busybox", "sh", "-c", script, "sh", "status-none"],
                         capture_output=True, text=True, check=False,
                         env={"PATH": os.environ["PATH"],
                              "MIXOS_FIREWALL_RULES": str(netns_loader / "rules"),
                              "MIXOS_FIREWALL_ALLOWED": str(allowed_rules)}).stdout
    for family in out.split("*filter")[1:]:
        lines = family.strip().splitlines()
        assert lines[-1] == "COMMIT"
        assert lines[-3].startswith("-A MIXOS-ALLOW -p tcp -m tcp --dport 80")
        assert lines[-2].startswith("-A MIXOS-PUBLISHED -p tcp -m conntrack --ctorigdstport 80")


# ---- mix and a package's service ------------------------------------------------------

def make_service(root: Path, name: str, conf: str) -> None:
    d = root / "etc/sv" / name
    d.mkdir(parents=True)
    (d / "run").write_text("#!/bin/sh\nexec sleep 1000\n")
    (d / "conf").write_text(conf)


def test_mix_finds_services_among_a_packages_files() -> None:
    assert mix_services.names(["/etc/sv/nginx/run", "/etc/sv/nginx/conf", "/etc/nginx/run",
                               "/etc/sv/a/b/run"]) == ["nginx"]


def test_mix_installs_a_service_disabled_and_says_how_to_enable_and_open_it(
        tmp_path: Path) -> None:
    make_service(tmp_path, "nginx", 'enable=no\nports="80/tcp"\n')
    said = mix_services.installed(tmp_path, "nginx")
    assert not (tmp_path / "etc/service/nginx").exists()
    assert "mixos-service enable --now nginx" in said and "mixos-firewall allow 80/tcp" in said


def test_mix_enables_a_service_whose_package_says_so_and_removal_disables_it(
        tmp_path: Path) -> None:
    make_service(tmp_path, "sshd", "enable=yes\n")
    mix_services.installed(tmp_path, "sshd")
    link = tmp_path / "etc/service/sshd"
    assert link.is_symlink() and os.readlink(link) == "/etc/sv/sshd"
    assert "disabled" in mix_services.removing(tmp_path, "sshd")
    assert not link.is_symlink()
