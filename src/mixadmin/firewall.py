"""The ports an admin opens with `mixos-firewall allow` (docs/security.md, "Firewall").

Two files beside the fixed policy (/etc/mixos/firewall/rules):

    allowed        one rule a line, as typed: "80/tcp", "5432/tcp from 10.0.0.0/8"
    allowed.rules  the same rules in iptables-restore form, one "# @family" section per
                   family, made from `allowed` here and nowhere else; the loader
                   (mixos-firewall start) adds its lines to the MIXOS-ALLOW and
                   MIXOS-PUBLISHED chains of the policy, so each family still loads as
                   one transaction.

One rule opens its port twice: in INPUT (MIXOS-ALLOW: a program on this host listens)
and in FORWARD (MIXOS-PUBLISHED: a container's port published on this host, which
netavark's DNAT turns into forwarded traffic that never crosses INPUT). The FORWARD
line matches the connection's original destination port and source, as conntrack
recorded them before the DNAT, so the port an admin opens is the one clients connect
to, and the line matches both directions of the connection.

On an installed system both are on disk and hold for the next boot; on the live ISO
/etc is in RAM, so they last until power-off.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

FIREWALL_DIR = Path("/etc/mixos/firewall")
ALLOWED = FIREWALL_DIR / "allowed"
POLICY = FIREWALL_DIR / "rules"
# A port the policy itself opens: an INPUT rule for it that jumps anywhere but a drop.
POLICY_PORT = re.compile(r"^-A INPUT\b.* -p (tcp|udp)\b.* --dport ([0-9]+)\b.* -j (?!DROP\b|MIXOS-DROP\b)\S+")
FAMILIES = ("ipv4", "ipv6")
CHAIN = "MIXOS-ALLOW"
PUBLISHED_CHAIN = "MIXOS-PUBLISHED"


class RuleError(Exception):
    """Bad input: the message names it and says what is accepted."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rule:
    port: int
    proto: str                   # "tcp" | "udp"
    source: Network | None = None

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}" + (f" from {self.source}" if self.source else "")

    @property
    def families(self) -> tuple[str, ...]:
        if self.source is None:
            return FAMILIES
        return ("ipv4",) if self.source.version == 4 else ("ipv6",)

    def iptables(self) -> str:
        src = f" -s {self.source}" if self.source else ""
        return (f"-A {CHAIN}{src} -p {self.proto} -m {self.proto} --dport {self.port}"
                " -m conntrack --ctstate NEW -j ACCEPT")

    def published(self) -> str:
        """The FORWARD line for a published (DNATed) port: the policy jumps to
        PUBLISHED_CHAIN only for connections in conntrack state DNAT."""
        src = f" --ctorigsrc {self.source}" if self.source else ""
        return (f"-A {PUBLISHED_CHAIN} -p {self.proto} -m conntrack{src}"
                f" --ctorigdstport {self.port} -j ACCEPT")


def parse_port(text: str) -> tuple[int, str]:
    port, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise RuleError(f"{text!r}: the protocol is tcp or udp (PORT/tcp, PORT/udp)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RuleError(f"{text!r}: the port is a number from 1 to 65535")
    return int(port), proto


def parse_rule(words: list[str]) -> Rule:
    """PORT[/tcp|udp] [from CIDR] (tcp when no protocol is given)."""
    if len(words) not in (1, 3) or (len(words) == 3 and words[1] != "from"):
        raise RuleError(f"{' '.join(words)!r}: expected PORT[/tcp|udp] [from CIDR]")
    port, proto = parse_port(words[0])
    source = None
    if len(words) == 3:
        try:
            source = ipaddress.ip_network(words[2], strict=True)
        except ValueError as e:
            raise RuleError(f"{words[2]!r} is not an address or network ({e}); "
                            "e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32") from None
    return Rule(port, proto, source)


def parse_allowed(text: str, where: Path = ALLOWED) -> list[Rule]:
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rules.append(parse_rule(line.split()))
        except RuleError as e:
            raise RuleError(f"{where} line {number}: {e}") from None
    return rules


def read_allowed(path: Path = ALLOWED) -> list[Rule]:
    return parse_allowed(path.read_text(), path) if path.exists() else []


def render_list(rules: list[Rule]) -> str:
    return ("# Ports opened by `mixos-firewall allow` (docs/security.md). Edit with\n"
            "# mixos-firewall allow/deny: allowed.rules is made from this file.\n"
            + "".join(f"{r}\n" for r in rules))


def render_rules(rules: list[Rule]) -> str:
    out = ["# Made by mixos-firewall from 'allowed': do not edit.\n"]
    for family in FAMILIES:
        out.append(f"# @family {family}\n")
        mine = [r for r in rules if family in r.families]
        out.extend(r.iptables() + "\n" for r in mine)
        out.extend(r.published() + "\n" for r in mine)
    return "".join(out)


def add(rules: list[Rule], rule: Rule) -> list[Rule]:
    if rule in rules:
        raise RuleError(f"{rule} is already allowed")
    return [*rules, rule]


def remove(rules: list[Rule], rule: Rule, any_source: bool) -> list[Rule]:
    """Without "from", deny drops every rule of that port and protocol."""
    kept = [r for r in rules if not (r.port == rule.port and r.proto == rule.proto
                                     and (any_source or r.source == rule.source))]
    if len(kept) == len(rules):
        raise RuleError(f"{rule} is not allowed, so there is nothing to deny "
                        "('mixos-firewall list' shows what is)")
    return kept


def policy_ports(text: str) -> set[str]:
    """The ports ("22/tcp") the policy file opens by itself, whatever is allowed."""
    return {f"{m.group(2)}/{m.group(1)}" for line in text.splitlines()
            if (m := POLICY_PORT.match(line))}


def is_open(port: str, path: Path = ALLOWED, policy: Path = POLICY) -> bool:
    """Whether PORT ("80/tcp") is open: by the policy, or by an allowed rule (from
    anywhere or from some network)."""
    try:
        number, proto = parse_port(port)
        if any(r.port == number and r.proto == proto for r in read_allowed(path)):
            return True
        return policy.exists() and f"{number}/{proto}" in policy_ports(policy.read_text())
    except (RuleError, OSError):
        return False
