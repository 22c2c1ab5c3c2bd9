"""#cloud-config user-data: parsed with PyYAML, validated key by key, handed on as
one frozen CloudConfig. A document with any invalid key is refused whole (an error
naming the key), so bad user-data changes nothing; keys outside the supported
subset are kept by name in CloudConfig.unknown and logged.

Supported keys (docs/boot.md, "Cloud-init"): users, ssh_authorized_keys, hostname,
fqdn, preserve_hostname, timezone, write_files, bootcmd, runcmd, packages,
package_update, package_upgrade, ssh_pwauth, ntp, power_state, final_message.
A user-data that starts with "#!" is a script run once per instance.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

# libyaml's loader when PyYAML was built with it (MixOS's is): ~10x faster.
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
# MixOS's `default` user (cloud-init's distro default user; Debian's is "debian").
DEFAULT_USER = "mixos"
ENCODINGS = {"text/plain": "", "b64": "b64", "base64": "b64", "gz": "gz", "gzip": "gz",
             "gz+b64": "gz+b64", "gz+base64": "gz+b64", "gzip+b64": "gz+b64",
             "gzip+base64": "gz+b64"}
POWER_MODES = ("poweroff", "reboot", "halt")


class UserDataError(ValueError):
    """The user-data is not valid; the message names the key and what was expected."""


Command = tuple[str, ...] | str  # argv, or a string run by /bin/sh -c


@dataclass(frozen=True)
class User:
    name: str
    gecos: str = ""
    groups: tuple[str, ...] = ()
    shell: str = "/bin/sh"
    homedir: str = ""
    ssh_keys: tuple[str, ...] = ()
    sudo: tuple[str, ...] = ()  # sudoers rules, translated to doas rules
    lock_passwd: bool = True
    hashed_passwd: str = ""
    system: bool = False

    @property
    def home(self) -> str:
        return self.homedir or f"/home/{self.name}"


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: bytes
    permissions: int = 0o644
    owner: str = "root:root"
    append: bool = False
    defer: bool = False  # written in the final stage, after users exist


@dataclass(frozen=True)
class PowerState:
    mode: str
    delay_s: int = 0
    message: str = ""


@dataclass(frozen=True)
class CloudConfig:
    users: tuple[User, ...] = ()
    ssh_authorized_keys: tuple[str, ...] = ()
    hostname: str = ""
    fqdn: str = ""
    preserve_hostname: bool = False
    timezone: str = ""
    write_files: tuple[WriteFile, ...] = ()
    bootcmd: tuple[Command, ...] = ()
    runcmd: tuple[Command, ...] = ()
    packages: tuple[str, ...] = ()
    package_update: bool = False
    package_upgrade: bool = False
    ssh_pwauth: bool = False
    ntp_servers: tuple[str, ...] = ()
    power_state: PowerState | None = None
    final_message: str = ""
    script: str = ""  # a "#!" user-data: run once per instance
    unknown: tuple[str, ...] = field(default=())


def _bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "yes", "on", "false", "no", "off"):
        return v.lower() in ("true", "yes", "on")
    raise UserDataError(f"{key}: expected true or false, not {v!r}")


def _str(key: str, v: Any) -> str:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise UserDataError(f"{key}: expected a string, not {type(v).__name__} {v!r}")


def _str_list(key: str, v: Any, *, comma: bool = False) -> tuple[str, ...]:
    """A list of strings; a single string too (split at commas when COMMA)."""
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(s.strip() for s in v.split(",") if s.strip()) if comma else (v,)
    if isinstance(v, list):
        return tuple(_str(f"{key}[{i}]", x) for i, x in enumerate(v))
    raise UserDataError(f"{key}: expected a list of strings, not {type(v).__name__}")


def _keys(key: str, v: Any) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in _str_list(key, v) if k.strip())
    for i, k in enumerate(keys):
        if "\n" in k or len(k.split()) < 2:
            raise UserDataError(f"{key}[{i}]: not an SSH public key line "
                                f"(expected 'ssh-ed25519 AAAA... comment'): {k[:40]!r}")
    return keys


def _command(key: str, v: Any) -> Command:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and v:
        return tuple(_str(f"{key}[{i}]", x) for i, x in enumerate(v))
    raise UserDataError(f"{key}: expected a command (a string, or a list of arguments), "
                        f"not {v!r}")


def _commands(key: str, v: Any) -> tuple[Command, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise UserDataError(f"{key}: expected a list of commands")
    return tuple(_command(f"{key}[{i}]", x) for i, x in enumerate(v))


def _mode(key: str, v: Any) -> int:
    try:
        mode = v if isinstance(v, int) and not isinstance(v, bool) else int(str(v), 8)
    except ValueError:
        raise UserDataError(f"{key}: expected an octal mode such as '0644', not {v!r}") from None
    if not 0 <= mode <= 0o7777:
        raise UserDataError(f"{key}: {v!r} is not a file mode (0000-7777)")
    return mode


def _mapping(key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise UserDataError(f"{key}: expected a mapping (key: value), not {type(v).__name__}")
    return {str(k): x for k, x in v.items()}


USER_KEYS = {"name", "gecos", "groups", "shell", "homedir", "ssh_authorized_keys", "sudo",
             "lock_passwd", "hashed_passwd", "passwd", "system", "primary_group",
             "no_create_home"}


def _sudo(key: str, v: Any) -> tuple[str, ...]:
    if v is None or v is False:
        return ()
    rules = _str_list(key, v)
    from mixcloud import doas  # the translation owns what a sudoers rule may say
    for i, rule in enumerate(rules):
        try:
            doas.translate("user", rule)
        except ValueError as e:
            raise UserDataError(f"{key}[{i}]: {e}") from None
    return rules


def _user(key: str, v: Any) -> User | str:
    if v == "default":
        return "default"
    if isinstance(v, str):
        v = {"name": v}
    d = _mapping(key, v)
    if "name" not in d:
        raise UserDataError(f"{key}: a user needs a name")
    name = _str(f"{key}.name", d["name"])
    if not NAME.match(name):
        raise UserDataError(f"{key}.name: {name!r} is not a user name (lower case letters, "
                            "digits, '_', '-', '.', starting with a letter or '_')")
    groups = _str_list(f"{key}.groups", d.get("groups"), comma=True)
    for g in groups:
        if not NAME.match(g):
            raise UserDataError(f"{key}.groups: {g!r} is not a group name")
    shell = _str(f"{key}.shell", d.get("shell", "/bin/sh"))
    if not shell.startswith("/"):
        raise UserDataError(f"{key}.shell: expected an absolute path, not {shell!r}")
    hashed = _str(f"{key}.hashed_passwd", d.get("hashed_passwd", d.get("passwd", "")))
    if hashed and not hashed.startswith("$"):
        raise UserDataError(f"{key}.hashed_passwd: expected a crypt(3) hash "
                            "('$6$...', made by 'mkpasswd -m sha-512'), not a plain password")
    unknown = sorted(set(d) - USER_KEYS)
    if unknown:
        raise UserDataError(f"{key}: unsupported user keys {', '.join(unknown)} "
                            f"(supported: {', '.join(sorted(USER_KEYS))})")
    return User(name=name, gecos=_str(f"{key}.gecos", d.get("gecos", "")), groups=groups,
                shell=shell, homedir=_str(f"{key}.homedir", d.get("homedir", "")),
                ssh_keys=_keys(f"{key}.ssh_authorized_keys", d.get("ssh_authorized_keys")),
                sudo=_sudo(f"{key}.sudo", d.get("sudo")),
                lock_passwd=_bool(f"{key}.lock_passwd", d.get("lock_passwd", True)),
                hashed_passwd=hashed, system=_bool(f"{key}.system", d.get("system", False)))


def default_user() -> User:
    return User(name=DEFAULT_USER, gecos="MixOS", groups=("wheel",),
                sudo=("ALL=(ALL) NOPASSWD:ALL",))


def _users(key: str, v: Any) -> tuple[User, ...]:
    items = v if isinstance(v, list) else _str_list(key, v, comma=True)
    out: list[User] = []
    for i, item in enumerate(items):
        u = _user(f"{key}[{i}]", item)
        out.append(default_user() if u == "default" else u)  # type: ignore[arg-type]
    names = [u.name for u in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserDataError(f"{key}: {', '.join(dupes)} listed twice")
    return tuple(out)


def _content(key: str, d: dict[str, Any]) -> bytes:
    raw = d.get("content", "")
    enc_name = str(d.get("encoding", "text/plain")).lower()
    if enc_name not in ENCODINGS:
        raise UserDataError(f"{key}.encoding: {enc_name!r} is not one of "
                            f"{', '.join(ENCODINGS)}")
    enc = ENCODINGS[enc_name]
    data = raw if isinstance(raw, bytes) else _str(f"{key}.content", raw).encode()
    try:
        if "b64" in enc:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        if "gz" in enc:
            data = gzip.decompress(data)
    except (ValueError, OSError, EOFError) as e:
        raise UserDataError(f"{key}.content: cannot decode it as {enc_name} ({e})") from None
    return data


def _write_files(key: str, v: Any) -> tuple[WriteFile, ...]:
    if not isinstance(v, list):
        raise UserDataError(f"{key}: expected a list of files")
    out = []
    for i, item in enumerate(v):
        k = f"{key}[{i}]"
        d = _mapping(k, item)
        path = _str(f"{k}.path", d.get("path", ""))
        if not path.startswith("/") or "/../" in f"{path}/":
            raise UserDataError(f"{k}.path: expected an absolute path without '..', "
                                f"not {path!r}")
        owner = _str(f"{k}.owner", d.get("owner", "root:root"))
        out.append(WriteFile(path=path, content=_content(k, d),
                             permissions=_mode(f"{k}.permissions", d.get("permissions", "0644")),
                             owner=owner, append=_bool(f"{k}.append", d.get("append", False)),
                             defer=_bool(f"{k}.defer", d.get("defer", False))))
    return tuple(out)


def _packages(key: str, v: Any) -> tuple[str, ...]:
    names = _str_list(key, v)
    for n in names:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9+._-]*$", n):
            raise UserDataError(f"{key}: {n!r} is not a package name")
    return names


def _hostname(key: str, v: Any) -> str:
    name = _str(key, v)
    if not HOSTNAME.match(name):
        raise UserDataError(f"{key}: {name!r} is not a host name (letters, digits and '-', "
                            "dot-separated labels)")
    return name


def _timezone(key: str, v: Any) -> str:
    tz = _str(key, v)
    if not TIMEZONE.match(tz) or ".." in tz:
        raise UserDataError(f"{key}: {tz!r} is not a time zone name (such as Europe/Paris)")
    return tz


def _ntp(key: str, v: Any) -> tuple[str, ...]:
    d = _mapping(key, v)
    if not _bool(f"{key}.enabled", d.get("enabled", True)):
        return ()
    servers = _str_list(f"{key}.servers", d.get("servers")) + \
        _str_list(f"{key}.pools", d.get("pools"))
    for s in servers:
        if not re.match(r"^[A-Za-z0-9.:-]+$", s):
            raise UserDataError(f"{key}: {s!r} is not a server name or address")
    return servers


def _delay(key: str, v: Any) -> int:
    if v in (None, "now"):
        return 0
    text = str(v)
    m = re.fullmatch(r"\+?(\d+)", text)
    if not m:
        raise UserDataError(f"{key}: expected 'now', '+MINUTES' or a number of minutes, "
                            f"not {v!r}")
    return int(m.group(1)) * 60


def _power_state(key: str, v: Any) -> PowerState:
    d = _mapping(key, v)
    mode = _str(f"{key}.mode", d.get("mode", ""))
    if mode not in POWER_MODES:
        raise UserDataError(f"{key}.mode: expected one of {', '.join(POWER_MODES)}, "
                            f"not {mode!r}")
    return PowerState(mode=mode, delay_s=_delay(f"{key}.delay", d.get("delay")),
                      message=_str(f"{key}.message", d.get("message", "")))


# The table of supported keys: each parser receives (key, value) and returns the
# CloudConfig field's value. Aliases are cloud-init's older names.
PARSERS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "users": ("users", _users),
    "ssh_authorized_keys": ("ssh_authorized_keys", _keys),
    "hostname": ("hostname", _hostname),
    "fqdn": ("fqdn", _hostname),
    "preserve_hostname": ("preserve_hostname", _bool),
    "timezone": ("timezone", _timezone),
    "write_files": ("write_files", _write_files),
    "bootcmd": ("bootcmd", _commands),
    "runcmd": ("runcmd", _commands),
    "packages": ("packages", _packages),
    "package_update": ("package_update", _bool),
    "package_upgrade": ("package_upgrade", _bool),
    "apt_update": ("package_update", _bool),
    "apt_upgrade": ("package_upgrade", _bool),
    "ssh_pwauth": ("ssh_pwauth", _bool),
    "ntp": ("ntp_servers", _ntp),
    "power_state": ("power_state", _power_state),
    "final_message": ("final_message", _str),
}


def parse(data: bytes) -> CloudConfig:
    """The CloudConfig of one user-data file (gzip-compressed too, as cloud-init
    accepts). Empty user-data is an empty CloudConfig."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UserDataError(f"user-data is gzip-compressed but cannot be read ({e})") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise UserDataError("user-data is not UTF-8 text") from None
    if not text.strip():
        return CloudConfig()
    first = text.lstrip().splitlines()[0].strip()
    if first.startswith("#!"):
        return CloudConfig(script=text)
    if not first.startswith("#cloud-config"):
        kind = "MIME multi-part" if first.lower().startswith(("content-type", "mime-version")) \
            else f"starts with {first[:30]!r}"
        raise UserDataError(f"user-data is not #cloud-config nor a #! script ({kind}); "
                            "MixOS reads #cloud-config and #! scripts only")
    try:
        doc = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserDataError(f"user-data is not valid YAML{where}: {problem}") from None
    if doc is None:
        return CloudConfig()
    if not isinstance(doc, dict):
        raise UserDataError(f"user-data: #cloud-config must be a mapping of keys, "
                            f"not a {type(doc).__name__}")
    values: dict[str, Any] = {}
    unknown = []
    for key, value in doc.items():
        key = str(key)
        if key not in PARSERS:
            unknown.append(key)
            continue
        name, parser = PARSERS[key]
        values[name] = parser(key, value)
    return CloudConfig(**values, unknown=tuple(unknown))
