"""mixos-firewall allow|deny|list (the loader, /usr/sbin/mixos-firewall, hands these
over): change the open ports, check the new rules with iptables-restore --test, save
them and load them through the same fail-closed loader. A change that does not load
is undone. Exit status: 0 done, 1 failed (nothing changed), 2 bad input."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mixadmin import firewall
from mixadmin.firewall import Rule, RuleError

LOADER = os.environ.get("MIXOS_FIREWALL_LOADER", "/usr/sbin/mixos-firewall")


class Failed(Exception):
    pass


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mixos-firewall", description=(
        "Open (allow) or close (deny) a port for IPv4 and IPv6 at once; list what is open."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd, text in (("allow", "open PORT[/tcp|udp] [from CIDR]"),
                      ("deny", "close it again (without 'from': every rule of that port)")):
        q = sub.add_parser(cmd, help=text)
        q.add_argument("rule", nargs="+", metavar="PORT[/tcp|udp] [from CIDR]")
    sub.add_parser("list", help="the open ports (besides SSH, which the policy opens)")
    return p.parse_args(list(argv))


def _write(path: Path, text: str) -> Path:
    new = path.with_name(path.name + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return new


def _loader(action: str, allowed_rules: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIXOS_FIREWALL_ALLOWED": str(allowed_rules)}
    return subprocess.run([LOADER, action], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)


def save_and_load(rules: list[Rule], allowed: Path, policy: Path) -> None:
    """Check, then swap in the files and reload; on a failed reload, the old files go
    back and are loaded again (the loader fails closed meanwhile)."""
    # iptables-restore --test does not notice a jump to a missing chain: ask here.
    text = policy.read_text()
    for chain, hook in ((firewall.CHAIN, "-A INPUT -j"),
                        (firewall.PUBLISHED_CHAIN, "-A FORWARD -m conntrack --ctstate DNAT -j")):
        if rules and f":{chain} " not in text:
            raise Failed(f"the policy {policy} has no {chain} chain (an older or edited "
                         f"file), nothing changed; add ':{chain} - [0:0]' and "
                         f"'{hook} {chain}' before its final drop in each family")
    generated = allowed.with_name(allowed.name + ".rules")
    new_list = _write(allowed, firewall.render_list(rules))
    new_rules = _write(generated, firewall.render_rules(rules))
    check = _loader("check", new_rules)
    if check.returncode != 0:
        new_list.unlink()
        new_rules.unlink()
        raise Failed("the new rules do not load, nothing changed:\n" + check.stderr.strip())
    backups = []
    for path in (allowed, generated):
        if path.exists():
            backup = path.with_name(path.name + ".old")
            os.replace(path, backup)
            backups.append((backup, path))
    os.replace(new_list, allowed)
    os.replace(new_rules, generated)
    start = _loader("start", generated)
    if start.returncode != 0:
        allowed.unlink()
        generated.unlink()
        for backup, path in backups:
            os.replace(backup, path)
        _loader("start", generated)
        raise Failed("the new rules failed to load; the previous ones are back:\n"
                     + start.stderr.strip())
    for backup, _ in backups:
        backup.unlink(missing_ok=True)


def run(args: argparse.Namespace, allowed: Path = firewall.ALLOWED,
        policy: Path = firewall.POLICY) -> list[str]:
    rules = firewall.read_allowed(allowed)
    if args.command == "list":
        try:
            opened = sorted(firewall.policy_ports(policy.read_text()))
        except OSError:
            opened = []
        return [f"{p} (the policy, {policy})" for p in opened] + [str(r) for r in rules]
    rule = firewall.parse_rule(args.rule)
    if os.geteuid() != 0:
        raise Failed(f"mixos-firewall {args.command} changes the firewall: run it as root")
    if args.command == "allow":
        new = firewall.add(rules, rule)
        save_and_load(new, allowed, policy)
        return [(f"mixos-firewall: {rule} open ({' and '.join(rule.families)}); "
                f"saved in {allowed}")]
    new = firewall.remove(rules, rule, any_source=len(args.rule) == 1)
    save_and_load(new, allowed, policy)
    return [(f"mixos-firewall: {rule} closed ({' and '.join(rule.families)}); "
            f"saved in {allowed}")]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for line in run(args):
            print(line)
    except RuleError as e:
        print(f"mixos-firewall: {e}", file=sys.stderr)
        return 2
    except (Failed, OSError) as e:
        print(f"mixos-firewall: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
