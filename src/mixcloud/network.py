"""network-config (cloud-init's networking config, version 1 and 2) from the seed:
static addresses, gateways, DNS servers, several interfaces, DHCP.

mixos-cloud applies the static interfaces itself with ip(8), before the network
step, and hands DHCP to the network step (/etc/init.d/S30network, BusyBox udhcpc)
by writing RUN_CONF, which that step reads instead of /etc/mixos/network.conf:

    mode=dhcp interface=eth1    udhcpc on eth1
    mode=none                   every interface is configured already: no DHCP

No network-config, or one that cannot be used, leaves the system's own (DHCP on
the first virtio NIC). Version 2 example (docs/boot.md):

    version: 2
    ethernets:
      eth0:
        addresses: [192.168.50.10/24]
        gateway4: 192.168.50.1
        nameservers: {addresses: [192.168.50.1]}
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mixcloud.userdata import Loader

RUN_CONF = "run/mixos/network.conf"
IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


class NetworkConfigError(ValueError):
    """The network-config is not valid; the message names the key."""


@dataclass(frozen=True)
class Interface:
    name: str = ""          # the kernel's name, or "" when matched by MAC only
    mac: str = ""
    set_name: str = ""
    dhcp: bool = False
    addresses: tuple[str, ...] = ()  # address/prefix
    gateway: str = ""
    gateway6: str = ""


@dataclass(frozen=True)
class NetworkConfig:
    interfaces: tuple[Interface, ...] = ()
    dns: tuple[str, ...] = ()
    search: tuple[str, ...] = ()


def _list(key: str, v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (str, int)):
        return [str(v)]
    if not isinstance(v, list):
        raise NetworkConfigError(f"{key}: expected a list")
    return v


def _ip(key: str, v: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(v)))
    except ValueError:
        raise NetworkConfigError(f"{key}: {v!r} is not an IP address") from None


def _cidr(key: str, v: Any, netmask: Any = None) -> str:
    text = str(v)
    if netmask and "/" not in text:
        text = f"{text}/{netmask}"
    if "/" not in text:
        raise NetworkConfigError(f"{key}: {v!r} has no prefix length (192.168.1.10/24)")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise NetworkConfigError(f"{key}: {text!r} is not an address/prefix") from None
    return f"{iface.ip}/{iface.network.prefixlen}"


def _name(key: str, v: Any) -> str:
    name = str(v)
    if not IFNAME.match(name):
        raise NetworkConfigError(f"{key}: {name!r} is not an interface name")
    return name


def _mac(key: str, v: Any) -> str:
    if not MAC.match(str(v)):
        raise NetworkConfigError(f"{key}: {v!r} is not a MAC address (52:54:00:12:34:56)")
    return str(v).lower()


def _v2(doc: dict[str, Any]) -> NetworkConfig:
    ifaces, dns, search = [], [], []
    eth = doc.get("ethernets") or {}
    if not isinstance(eth, dict):
        raise NetworkConfigError("ethernets: expected a mapping of interface ids")
    for other in ("bonds", "bridges", "vlans", "wifis", "tunnels"):
        if doc.get(other):
            raise NetworkConfigError(f"{other}: not supported by MixOS (ethernets only)")
    for ident, d in eth.items():
        k = f"ethernets.{ident}"
        d = d or {}
        if not isinstance(d, dict):
            raise NetworkConfigError(f"{k}: expected a mapping")
        match = d.get("match") or {}
        mac = _mac(f"{k}.match.macaddress", match["macaddress"]) if "macaddress" in match else ""
        if match.get("name") and "*" in str(match["name"]):
            raise NetworkConfigError(f"{k}.match.name: patterns are not supported")
        name = _name(k, match.get("name") or ident) if not mac else ""
        routes = _list(f"{k}.routes", d.get("routes"))
        gw4 = _ip(f"{k}.gateway4", d["gateway4"]) if d.get("gateway4") else ""
        gw6 = _ip(f"{k}.gateway6", d["gateway6"]) if d.get("gateway6") else ""
        for i, r in enumerate(routes):
            if not isinstance(r, dict) or "via" not in r:
                raise NetworkConfigError(f"{k}.routes[{i}]: expected {{to: default, via: IP}}")
            if str(r.get("to", "default")) not in ("default", "0.0.0.0/0", "::/0"):
                raise NetworkConfigError(f"{k}.routes[{i}].to: only default routes are "
                                         "supported")
            via = _ip(f"{k}.routes[{i}].via", r["via"])
            if ":" in via:
                gw6 = gw6 or via
            else:
                gw4 = gw4 or via
        ns = d.get("nameservers") or {}
        dns += [_ip(f"{k}.nameservers.addresses", a) for a in _list(k, ns.get("addresses"))]
        search += [str(s) for s in _list(k, ns.get("search"))]
        ifaces.append(Interface(
            name=name, mac=mac,
            set_name=_name(f"{k}.set-name", d["set-name"]) if d.get("set-name") else "",
            dhcp=bool(d.get("dhcp4") or d.get("dhcp6")),
            addresses=tuple(_cidr(f"{k}.addresses", a)
                            for a in _list(f"{k}.addresses", d.get("addresses"))),
            gateway=gw4, gateway6=gw6))
    return NetworkConfig(tuple(ifaces), tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(search)))


def _v1(doc: dict[str, Any]) -> NetworkConfig:
    ifaces, dns, search = [], [], []
    for i, item in enumerate(_list("config", doc.get("config"))):
        k = f"config[{i}]"
        if not isinstance(item, dict):
            raise NetworkConfigError(f"{k}: expected a mapping")
        kind = item.get("type")
        if kind == "nameserver":
            dns += [_ip(f"{k}.address", a) for a in _list(k, item.get("address"))]
            search += [str(s) for s in _list(k, item.get("search"))]
            continue
        if kind != "physical":
            raise NetworkConfigError(f"{k}.type: {kind!r} is not supported by MixOS "
                                     "(physical, nameserver)")
        name = _name(f"{k}.name", item["name"]) if item.get("name") else ""
        mac = _mac(f"{k}.mac_address", item["mac_address"]) if item.get("mac_address") else ""
        if not name and not mac:
            raise NetworkConfigError(f"{k}: needs a name or a mac_address")
        addrs, gw4, gw6, dhcp = [], "", "", False
        for j, s in enumerate(_list(f"{k}.subnets", item.get("subnets"))):
            ks = f"{k}.subnets[{j}]"
            st = s.get("type") if isinstance(s, dict) else None
            if st in ("dhcp", "dhcp4", "dhcp6", "ipv6_slaac"):
                dhcp = True
            elif st in ("static", "static6"):
                addrs.append(_cidr(f"{ks}.address", s.get("address", ""), s.get("netmask")))
                if s.get("gateway"):
                    gw = _ip(f"{ks}.gateway", s["gateway"])
                    gw6, gw4 = (gw6 or gw, gw4) if ":" in gw else (gw6, gw4 or gw)
                dns += [_ip(f"{ks}.dns_nameservers", a)
                        for a in _list(ks, s.get("dns_nameservers"))]
                search += [str(x) for x in _list(ks, s.get("dns_search"))]
            else:
                raise NetworkConfigError(f"{ks}.type: {st!r} is not static or dhcp")
        # A physical interface with no subnets is only brought up.
        ifaces.append(Interface(name=name if not mac else "", mac=mac,
                                set_name=name if mac else "", dhcp=dhcp,
                                addresses=tuple(addrs), gateway=gw4, gateway6=gw6))
    return NetworkConfig(tuple(ifaces), tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(search)))


def parse(data: bytes) -> NetworkConfig | None:
    """The network configuration of a network-config file; None when it says
    `config: disabled` (keep the system's own)."""
    try:
        doc = yaml.load(data.decode(), Loader=Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise NetworkConfigError(f"network-config is not valid YAML: "
                                 f"{str(e).splitlines()[0]}") from None
    if isinstance(doc, dict) and isinstance(doc.get("network"), dict):
        doc = doc["network"]
    if not isinstance(doc, dict):
        raise NetworkConfigError("network-config: expected a mapping with version: 1 or 2")
    if doc.get("config") == "disabled":
        return None
    version = doc.get("version")
    if version == 2:
        return _v2(doc)
    if version == 1:
        return _v1(doc)
    raise NetworkConfigError(f"network-config: version {version!r} is not 1 or 2")


def _macs(sys_net: Path) -> dict[str, str]:
    """MAC address -> interface name, of this machine's interfaces."""
    out = {}
    for dev in sorted(sys_net.glob("*")):
        try:
            out[(dev / "address").read_text().strip().lower()] = dev.name
        except OSError:
            continue
    return out


def plan(config: NetworkConfig, sys_net: Path = Path("/sys/class/net")
         ) -> tuple[list[list[str]], str, list[str]]:
    """What applying CONFIG takes on this machine: the ip(8) argument lists, the
    text of RUN_CONF ("" when no interface of CONFIG is on this machine: the
    system's own DHCP then), and warnings (an interface the machine lacks)."""
    macs = _macs(sys_net)
    commands: list[list[str]] = []
    warnings: list[str] = []
    dhcp: list[str] = []
    default4 = default6 = False
    for iface in config.interfaces:
        name = macs.get(iface.mac, "") if iface.mac else iface.name
        if not name or not (sys_net / name).exists():
            warnings.append(f"no interface {iface.mac or iface.name} on this machine; "
                            "its configuration is skipped")
            continue
        if iface.set_name and iface.set_name != name:
            commands.append(["link", "set", "dev", name, "name", iface.set_name])
            name = iface.set_name
        commands.append(["link", "set", "dev", name, "up"])
        for a in iface.addresses:
            commands.append(["addr", "add", a, "dev", name])
        if iface.gateway and not default4:
            commands.append(["route", "add", "default", "via", iface.gateway, "dev", name])
            default4 = True
        if iface.gateway6 and not default6:
            commands.append(["-6", "route", "add", "default", "via", iface.gateway6,
                             "dev", name])
            default6 = True
        if iface.dhcp:
            dhcp.append(name)
    if not commands:
        return [], "", warnings
    if len(dhcp) > 1:
        warnings.append(f"DHCP on {dhcp[0]} only (also asked on {', '.join(dhcp[1:])}): "
                        "the network step runs one DHCP client")
    lines = ["# Written by mixos-cloud from the seed's network-config; read by",
             "# /etc/init.d/S30network instead of /etc/mixos/network.conf."]
    lines += ["mode=dhcp", f"interface={dhcp[0]}"] if dhcp else ["mode=none"]
    return commands, "\n".join(lines) + "\n", warnings


def resolv_conf(config: NetworkConfig) -> str | None:
    if not config.dns:
        return None
    text = "# Written by mixos-cloud from the seed's network-config.\n"
    text += "".join(f"nameserver {d}\n" for d in config.dns)
    return text + (f"search {' '.join(config.search)}\n" if config.search else "")
