"""install.yaml: read it (a file or a URL), validate it against the JSON Schema
install.schema.json (fastjsonschema), and hand the rest of the installer one
frozen InstallConfig. A wrong file is refused here, before any disk is touched,
with the key path, what was expected and the line (docs/install-yaml.md).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("install.schema.json")
SCHEMA_VERSION = 1
FETCH_TIMEOUT = 30.0
MAX_SIZE = 1024 * 1024  # an install.yaml is a few KiB; refuse anything absurd


class ConfigError(ValueError):
    """install.yaml is missing, unreadable or invalid; the message says where and why."""


@dataclass(frozen=True)
class Size:
    """A partition size: MiB, a percentage of the disk, or the rest of it."""

    mib: int | None = None
    percent: int | None = None  # of the whole disk

    @property
    def rest(self) -> bool:
        return self.mib is None and self.percent is None

    @classmethod
    def parse(cls, text: str) -> Size:
        if text == "rest":
            return cls()
        if text.endswith("%"):
            return cls(percent=int(text[:-1]))
        if text.endswith("GiB"):
            return cls(mib=int(text[:-3]) * 1024)
        if text.endswith("MiB"):
            return cls(mib=int(text[:-3]))
        raise ConfigError(f"not a size: {text!r}")  # the schema's pattern prevents this

    def __str__(self) -> str:
        return "rest" if self.rest else f"{self.percent}%" if self.percent else f"{self.mib}MiB"


@dataclass(frozen=True)
class Network:
    mode: str = "dhcp"
    interface: str = "auto"
    address: str = ""
    gateway: str = ""
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    name: str
    gecos: str = ""
    groups: tuple[str, ...] = ()
    shell: str = "/bin/sh"
    ssh_keys: tuple[str, ...] = ()
    admin: bool = False


@dataclass(frozen=True)
class Repository:
    url: str
    key: str = ""
    key_name: str = ""


@dataclass(frozen=True)
class InstallConfig:
    disk: str  # a device path or "auto"
    wipe: bool = False
    root_size: Size = field(default_factory=Size)
    swap_size: Size | None = None
    data_size: Size | None = None
    data_mount: str = "/srv"
    hostname: str = "mixos"
    timezone: str = "UTC"
    network: Network = field(default_factory=Network)
    users: tuple[User, ...] = ()
    root_ssh_keys: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    repositories: tuple[Repository, ...] = ()
    use_medium_repository: bool = True
    kernel_args: str = ""
    user_namespaces: bool = False  # security.user_namespaces
    grub_password: str = ""  # security.grub_password: a PBKDF2 hash, "" for none
    grow_root: bool = True
    finish: str = "reboot"
    source: str = ""  # where it was read from, for messages

    def json(self) -> dict[str, Any]:
        """A plain summary (for --dry-run and the log)."""
        from dataclasses import asdict
        d = asdict(self)
        for k in ("root_size", "swap_size", "data_size"):
            v = getattr(self, k)
            d[k] = None if v is None else str(v)
        return d


_validator: Any = None


def validator() -> Any:
    global _validator
    if _validator is None:
        _validator = fastjsonschema.compile(json.loads(SCHEMA_PATH.read_text()),
                                            use_default=False)
    return _validator


def read_text(source: str) -> str:
    """The text of install.yaml from a path or an http(s)/file URL."""
    if "://" in source:
        if not source.startswith(("http://", "https://", "file://")):
            raise ConfigError(f"{source}: only http://, https:// and file:// URLs are read")
        try:
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT) as r:
                data = r.read(MAX_SIZE + 1)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{source}: cannot fetch it ({e})") from None
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(MAX_SIZE + 1)
        except OSError as e:
            raise ConfigError(f"{source}: cannot read it ({e.strerror})") from None
    if len(data) > MAX_SIZE:
        raise ConfigError(f"{source}: larger than {MAX_SIZE // 1024} KiB; not an install.yaml")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None


def _node_at(node: yaml.Node | None, path: list[Any]) -> yaml.Node | None:
    """The YAML node at PATH (keys and indexes), or the deepest one found."""
    for part in path:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and str(part).isdigit() \
                and int(part) < len(node.value):
            nxt = node.value[int(part)]
        else:
            nxt = None
        if nxt is None:
            return node
        node = nxt
    return node


def _key_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        index = isinstance(part, int) or str(part).isdigit()
        out += f"[{part}]" if index else (f".{part}" if out else str(part))
    return out or "(the top level)"


def _explain(e: fastjsonschema.JsonSchemaValueException) -> str:
    """What was expected, in words, from the failing schema rule."""
    d = e.definition if isinstance(e.definition, dict) else {}
    rule = e.rule
    if rule == "additionalProperties":
        allowed = ", ".join(sorted(d.get("properties", {})))
        return f"unknown key; the keys allowed here are: {allowed}"
    if rule == "required":
        have = e.value if isinstance(e.value, dict) else {}
        missing = [k for k in d.get("required", []) if k not in have]
        return f"missing key: {', '.join(missing)}" + (
            " (required when mode is static)" if "address" in missing else "")
    if rule in ("enum", "const"):
        allowed = d.get("enum", [d.get("const")])
        return "expected one of: " + ", ".join(json.dumps(a) for a in allowed)
    if rule == "type":
        return f"expected {d.get('type')}, got {type(e.value).__name__}"
    if rule == "pattern" and d.get("description"):
        return f"expected {d['description']}, got {e.value!r}"
    return e.message.replace("data.", "", 1).replace("data ", "", 1)


def parse(text: str, source: str = "install.yaml") -> InstallConfig:
    """Validate TEXT (install.yaml) and return its InstallConfig, or raise ConfigError
    naming SOURCE, the line, the key path and what was expected."""
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys (version:, disk:, ...), "
                          f"got {type(data).__name__}")
    if data.get("version") not in (None, SCHEMA_VERSION) and isinstance(data.get("version"), int):
        raise ConfigError(f"{source}: version {data['version']} is not supported; this "
                          f"installer reads version {SCHEMA_VERSION}")
    try:
        validator()(data)
    except fastjsonschema.JsonSchemaValueException as e:
        path = [p for p in (e.path or [])[1:]]
        if e.rule == "additionalProperties" and isinstance(e.value, dict):
            allowed = set((e.definition or {}).get("properties", {}))
            extra = sorted(k for k in e.value if k not in allowed)
            if extra:
                path.append(extra[0])
        node = _node_at(tree, path)
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        raise ConfigError(f"{source}{line}: {_key_path(path)}: {_explain(e)}") from None
    return _build(data, source)


def _build(d: dict[str, Any], source: str) -> InstallConfig:
    parts = d.get("partitions", {})
    net = d.get("network", {"mode": "dhcp"})
    users = tuple(User(name=u["name"], gecos=u.get("gecos", ""),
                       groups=tuple(u.get("groups", ())), shell=u.get("shell", "/bin/sh"),
                       ssh_keys=tuple(u.get("ssh_keys", ())), admin=u.get("admin", False))
                  for u in d.get("users", ()))
    names = [u.name for u in users]
    dup = sorted({n for n in names if names.count(n) > 1} | ({"root"} & set(names)))
    if dup:
        raise ConfigError(f"{source}: users: {', '.join(dup)} given twice or reserved "
                          "(root is configured with root_ssh_keys:)")
    return InstallConfig(
        disk=d["disk"], wipe=d.get("wipe", False),
        root_size=Size.parse(parts.get("root", {}).get("size", "rest")),
        swap_size=Size.parse(parts["swap"]["size"]) if "swap" in parts else None,
        data_size=Size.parse(parts["data"]["size"]) if "data" in parts else None,
        data_mount=parts.get("data", {}).get("mount", "/srv"),
        hostname=d.get("hostname", "mixos"), timezone=d.get("timezone", "UTC"),
        network=Network(mode=net["mode"], interface=net.get("interface", "auto"),
                        address=net.get("address", ""), gateway=net.get("gateway", ""),
                        dns=tuple(net.get("dns", ()))),
        users=users, root_ssh_keys=tuple(d.get("root_ssh_keys", ())),
        packages=tuple(d.get("packages", ())),
        repositories=tuple(Repository(url=r["url"], key=r.get("key", ""),
                                      key_name=r.get("key_name", ""))
                           for r in d.get("repositories", ())),
        use_medium_repository=d.get("use_medium_repository", True),
        kernel_args=d.get("kernel_args", ""),
        user_namespaces=d.get("security", {}).get("user_namespaces", False),
        grub_password=d.get("security", {}).get("grub_password", ""),
        grow_root=d.get("grow_root", True),
        finish=d.get("finish", "reboot"), source=source)


def load(source: str) -> InstallConfig:
    return parse(read_text(source), source)
