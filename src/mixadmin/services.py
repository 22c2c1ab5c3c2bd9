"""A service's definition and where its state lives (docs/services.md).

    /etc/sv/NAME/run     what runs the daemon in the foreground (shipped by a package)
    /etc/sv/NAME/conf    optional KEY=VALUE lines: description, enable, ports, reload,
                         log, early, started_by
    /etc/service/NAME    enabled at boot: a symlink to /etc/sv/NAME
    /run/service/NAME    supervised by runsvdir (built by /usr/lib/mixos/supervise)
    /var/log/sv/NAME/    its log, written by svlogd
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFS = Path("/etc/sv")
ENABLED = Path("/etc/service")
SCAN = Path("/run/service")
LOGS = Path("/var/log/sv")

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# sv's command for each signal `reload` may name (sv has no generic "signal N")
RELOAD_SIGNALS = {"HUP": "hup", "USR1": "1", "USR2": "2", "ALRM": "alarm", "INT": "interrupt",
                  "QUIT": "quit"}
CONF_KEYS = ("description", "enable", "ports", "reload", "log", "early", "started_by")
PORT_RE = re.compile(r"([0-9]{1,5})/(tcp|udp)")


class ServiceError(Exception):
    """A bad name or definition: the message says which and what to do."""


@dataclass(frozen=True)
class Definition:
    name: str
    description: str = ""
    enable: bool = False          # enabled when its package is first installed
    ports: tuple[str, ...] = ()   # "80/tcp": what it listens on (the firewall decides)
    reload: str = "HUP"
    log: bool = True
    early: bool = False
    started_by: str = ""          # a boot step that starts it instead of enable/disable


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ServiceError(f"{name!r} is not a service name (lower-case letters, digits, "
                           "'.', '_' and '-')")
    return name


def parse_conf(name: str, text: str) -> Definition:
    """The conf file: KEY=VALUE or KEY="VALUE" lines, '#' comments; shell-readable."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in CONF_KEYS:
            raise ServiceError(f"{DEFS / name / 'conf'} line {number}: {raw.strip()!r}: "
                               f"expected KEY=VALUE with KEY one of {', '.join(CONF_KEYS)}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    for key in ("enable", "log", "early"):
        if values.get(key, "yes" if key == "log" else "no") not in ("yes", "no"):
            raise ServiceError(f"{DEFS / name / 'conf'}: {key}={values[key]!r}: "
                               "use yes or no")
    ports = tuple(values.get("ports", "").split())
    for port in ports:
        m = PORT_RE.fullmatch(port)
        if not m or not 0 < int(m.group(1)) < 65536:
            raise ServiceError(f"{DEFS / name / 'conf'}: port {port!r}: use PORT/tcp or "
                               "PORT/udp, PORT 1-65535")
    reload = values.get("reload", "HUP").upper().removeprefix("SIG")
    if reload not in RELOAD_SIGNALS:
        raise ServiceError(f"{DEFS / name / 'conf'}: reload={values['reload']!r}: use one of "
                           + ", ".join(RELOAD_SIGNALS))
    return Definition(name=name, description=values.get("description", ""),
                      enable=values.get("enable") == "yes", ports=ports, reload=reload,
                      log=values.get("log", "yes") == "yes",
                      early=values.get("early") == "yes",
                      started_by=values.get("started_by", ""))


def load(name: str, defs: Path = DEFS) -> Definition:
    check_name(name)
    if not (defs / name / "run").is_file():
        known = ", ".join(names(defs)) or "none"
        raise ServiceError(f"no service {name!r}: {defs / name / 'run'} does not exist "
                           f"(services: {known}; a package ships them, see 'mix search')")
    conf = defs / name / "conf"
    return parse_conf(name, conf.read_text() if conf.exists() else "")


def names(defs: Path = DEFS) -> list[str]:
    if not defs.is_dir():
        return []
    return sorted(p.name for p in defs.iterdir()
                  if (p / "run").is_file() and NAME_RE.fullmatch(p.name))
