"""Host-wide settings from user-data: host name (hostname, fqdn, preserve_hostname,
meta-data's local-hostname), time zone, NTP servers and sshd password logins."""

from __future__ import annotations

import re
from pathlib import Path

from mix.accounts import replace_file

NTP_CONF = "etc/mixos/ntp.conf"
SSHD_DROPIN = "etc/ssh/sshd_config.d/50-mixos-cloud.conf"


def choose_hostname(hostname: str, fqdn: str, local_hostname: str) -> tuple[str, str]:
    """(short name, fully qualified name or ""): user-data's fqdn, then its
    hostname, then meta-data's local-hostname; as cloud-init does, the short name
    is the first label of an fqdn."""
    name = fqdn or hostname or local_hostname
    full = fqdn or (name if "." in name else "")
    short = (hostname or name).split(".")[0]
    return short, full


def set_kernel_hostname(name: str, proc: Path = Path("/proc/sys/kernel/hostname")) -> None:
    proc.write_text(name + "\n")


def write_hostname(root: Path, short: str, full: str) -> None:
    replace_file(root / "etc/hostname", short + "\n")
    hosts = root / "etc/hosts"
    text = hosts.read_text() if hosts.is_file() else "127.0.0.1\tlocalhost\n"
    names = f"{full}\t{short}" if full else short
    text = re.sub(r"(?m)^127\.0\.1\.1\s.*\n?", "", text)
    if not text.endswith("\n"):
        text += "\n"
    replace_file(hosts, text + f"127.0.1.1\t{names}\n")


def timezone(root: Path, zone: str) -> str | None:
    """/etc/timezone, and /etc/localtime when the zone file exists. Returns a warning."""
    replace_file(root / "etc/timezone", zone + "\n")
    zonefile = root / "usr/share/zoneinfo" / zone
    localtime = root / "etc/localtime"
    if zonefile.is_file():
        localtime.unlink(missing_ok=True)
        localtime.symlink_to(f"../usr/share/zoneinfo/{zone}")
        return None
    if zone not in ("UTC", "Etc/UTC"):
        return (f"time zone {zone}: no zone file (the tzdata package is not installed); "
                "the clock stays in UTC until it is")
    return None


def ntp_servers(root: Path, servers: tuple[str, ...]) -> None:
    """servers="..." in /etc/mixos/ntp.conf (read by the ntpd service, /etc/sv/ntpd/run)."""
    path = root / NTP_CONF
    lines = path.read_text().splitlines() if path.is_file() else []
    lines = [line for line in lines if not line.startswith("servers=")]
    lines.append(f'servers="{" ".join(servers)}"  # from the cloud-config ntp: (mixos-cloud)')
    replace_file(path, "\n".join(lines) + "\n")


def ssh_pwauth(root: Path, enabled: bool) -> None:
    path = root / SSHD_DROPIN
    if enabled:
        replace_file(path, "# mixos-cloud: the cloud-config says ssh_pwauth: true, and a user has "
                     "a password hash.\nPasswordAuthentication yes\n")
    else:
        path.unlink(missing_ok=True)
