"""sudo rules in user-data, as doas rules: MixOS's privilege tool is doas (package
doas, docs/security.md), not sudo. cloud-config's `sudo:` holds sudoers rule
bodies ("HOSTS=(RUNAS) [NOPASSWD:] COMMANDS"); each becomes doas.conf(5) lines:

    ALL=(ALL) NOPASSWD:ALL                 permit nopass alice
    ALL=(ALL:ALL) ALL                      permit alice            (needs a password)
    ALL=(root) NOPASSWD: /sbin/reboot, /bin/dmesg
                                           permit nopass alice as root cmd /sbin/reboot
                                           permit nopass alice as root cmd /bin/dmesg

What doas cannot say (host lists, command aliases, other tags) is refused with
the reason, and the user-data is refused with it.
"""

from __future__ import annotations

import re

RULE = re.compile(r"^\s*(?P<hosts>[^=\s]+)\s*=\s*(\((?P<runas>[^)]*)\))?\s*(?P<rest>.*)$")
TAGS = {"NOPASSWD": "nopass", "PASSWD": ""}
# doas.conf words are separated by blanks; quotes would be needed for others.
WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def translate(user: str, rule: str) -> list[str]:
    """The doas.conf lines granting USER what sudoers RULE grants; ValueError when
    doas cannot express it."""
    m = RULE.match(rule)
    if not m:
        raise ValueError(f"{rule!r} is not a sudoers rule (HOSTS=(RUNAS) [NOPASSWD:] COMMANDS)")
    if m.group("hosts") != "ALL":
        raise ValueError(f"{rule!r}: host lists other than ALL have no doas equivalent")
    runas = (m.group("runas") or "root").split(":")[0].strip()
    rest = m.group("rest").strip()
    options = ""
    while True:
        tag = re.match(r"^([A-Z_]+):\s*", rest)
        if not tag:
            break
        if tag.group(1) not in TAGS:
            raise ValueError(f"{rule!r}: the sudoers tag {tag.group(1)} has no doas "
                             f"equivalent (supported: {', '.join(TAGS)})")
        options = TAGS[tag.group(1)] or options
        rest = rest[tag.end():]
    if not rest:
        raise ValueError(f"{rule!r} names no command (ALL, or a command path)")
    head = "permit " + (f"{options} " if options else "") + user
    if runas != "ALL":
        if not WORD.match(runas):
            raise ValueError(f"{rule!r}: cannot run as {runas!r}")
        head += f" as {runas}"
    lines = []
    for cmd in (c.strip() for c in rest.split(",")):
        if cmd == "ALL":
            lines.append(head)
            continue
        words = cmd.split()
        if not words or not words[0].startswith("/") or not all(WORD.match(w) for w in words):
            raise ValueError(f"{rule!r}: {cmd!r} is not ALL nor a command path with plain "
                             "arguments")
        args = f" args {' '.join(words[1:])}" if len(words) > 1 else ""
        lines.append(f"{head} cmd {words[0]}{args}")
    return lines
