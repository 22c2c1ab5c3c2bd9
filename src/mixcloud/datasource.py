"""Where a seed comes from, and what it holds.

  NoCloud      a disk or ISO whose file system is labelled cidata (or CIDATA):
               user-data, meta-data (YAML: instance-id, local-hostname,
               public-keys), network-config (optional)
  NoCloud URL  `ds=nocloud;s=URL` (or ds=nocloud-net, seedfrom=URL) on the kernel
               command line: URL/user-data, URL/meta-data, URL/network-config,
               fetched once the network is up (the final stage)
  ConfigDrive  OpenStack's disk labelled config-2: openstack/latest/meta_data.json
               (uuid, hostname, public_keys) and openstack/latest/user_data

A disk seed is read in the local stage and kept, for the final stage, under
/run/mixos-cloud/seed (mode 0700: user-data may hold password hashes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixcloud.userdata import Loader

NOCLOUD_LABELS = ("cidata", "CIDATA")
CONFIGDRIVE_LABELS = ("config-2", "CONFIG-2")
SEED_DIR = "run/mixos-cloud/seed"
FETCH_TIMEOUT = 10.0
MAX_SIZE = 16 * 1024 * 1024  # cloud-init's user-data limit is 16 KiB on EC2; be generous


class SeedError(ValueError):
    """The seed cannot be read; the message says which file and why."""


@dataclass(frozen=True)
class Seed:
    datasource: str            # "NoCloud /dev/vdb", "ConfigDrive /dev/sr1", "NoCloud http://..."
    instance_id: str
    local_hostname: str = ""
    public_keys: tuple[str, ...] = ()
    user_data: bytes = b""
    network_config: bytes | None = None
    notes: tuple[str, ...] = field(default=())  # what was read but not used, for the log

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        (directory / "user-data").write_bytes(self.user_data)
        if self.network_config is not None:
            (directory / "network-config").write_bytes(self.network_config)
        meta = {k: v for k, v in asdict(self).items() if k not in ("user_data", "network_config")}
        (directory / "seed.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> Seed | None:
        try:
            meta = json.loads((directory / "seed.json").read_text())
        except FileNotFoundError:
            return None
        net = directory / "network-config"
        return cls(datasource=meta["datasource"], instance_id=meta["instance_id"],
                   local_hostname=meta["local_hostname"],
                   public_keys=tuple(meta["public_keys"]), notes=tuple(meta["notes"]),
                   user_data=(directory / "user-data").read_bytes(),
                   network_config=net.read_bytes() if net.exists() else None)


def cmdline_url(cmdline: str) -> str | None:
    """The seed URL of `ds=nocloud;s=URL` (nocloud-net, seedfrom= too), ending in '/'."""
    for arg in cmdline.split():
        if not re.match(r"^ds=nocloud(-net)?(;|$)", arg):
            continue
        for part in arg.split(";")[1:]:
            key, _, value = part.partition("=")
            if key in ("s", "seedfrom") and value:
                return value if value.endswith("/") else value + "/"
    return None


def labelled_devices(blkid_output: str, labels: tuple[str, ...]) -> list[str]:
    """The devices of `blkid` output lines whose LABEL is one of LABELS."""
    out = []
    for line in blkid_output.splitlines():
        dev, _, rest = line.partition(":")
        m = re.search(r'\sLABEL="([^"]*)"', f" {rest}")
        if m and m.group(1) in labels:
            out.append(dev)
    return out


def _meta_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.load(text, Loader=Loader) if text.strip() else {}
    except yaml.YAMLError as e:
        raise SeedError(f"{source}/meta-data is not valid YAML: "
                        f"{str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise SeedError(f"{source}/meta-data: expected a mapping (instance-id: ...)")
    return doc


def _public_keys(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(k.strip() for k in v.splitlines() if k.strip())
    if isinstance(v, list):
        return tuple(str(k).strip() for k in v if str(k).strip())
    if isinstance(v, dict):
        return tuple(str(k).strip() for k in v.values() if str(k).strip())
    return ()


def _nocloud(datasource: str, meta_text: str, user_data: bytes,
             network_config: bytes | None) -> Seed:
    meta = _meta_yaml(meta_text, datasource)
    iid = str(meta.get("instance-id") or meta.get("instance_id") or "")
    if not iid:
        raise SeedError(f"{datasource}: meta-data has no instance-id")
    return Seed(datasource=f"NoCloud {datasource}", instance_id=iid,
                local_hostname=str(meta.get("local-hostname") or meta.get("hostname") or ""),
                public_keys=_public_keys(meta.get("public-keys")), user_data=user_data,
                network_config=network_config)


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_SIZE:
        raise SeedError(f"{path.name} is over {MAX_SIZE // 1048576} MiB")
    return path.read_bytes()


def read_nocloud_dir(top: Path, device: str) -> Seed:
    if not (top / "meta-data").is_file():
        raise SeedError(f"the NoCloud seed {device} has no meta-data file")
    user = top / "user-data"
    net = top / "network-config"
    return _nocloud(device, _read(top / "meta-data").decode(errors="replace"),
                    _read(user) if user.is_file() else b"",
                    _read(net) if net.is_file() else None)


def read_configdrive_dir(top: Path, device: str) -> Seed:
    latest = top / "openstack" / "latest"
    try:
        meta = json.loads(_read(latest / "meta_data.json"))
    except FileNotFoundError:
        raise SeedError(f"the config drive {device} has no "
                        "openstack/latest/meta_data.json") from None
    except ValueError as e:
        raise SeedError(f"{device}: openstack/latest/meta_data.json is not JSON ({e})") from None
    if not isinstance(meta, dict) or not meta.get("uuid"):
        raise SeedError(f"{device}: openstack/latest/meta_data.json has no uuid")
    user = latest / "user_data"
    notes = ("network_data.json is not read (OpenStack's format): DHCP",) \
        if (latest / "network_data.json").is_file() else ()
    return Seed(datasource=f"ConfigDrive {device}", instance_id=str(meta["uuid"]),
                local_hostname=str(meta.get("hostname") or meta.get("name") or ""),
                public_keys=_public_keys(meta.get("public_keys")),
                user_data=_read(user) if user.is_file() else b"", notes=notes)


def _mounted(device: str, reader: Any) -> Seed:
    with tempfile.TemporaryDirectory(prefix="mixos-cloud-") as mnt:
        proc = subprocess.run(["mount", "-o", "ro", device, mnt], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise SeedError(f"cannot mount the seed {device}: {proc.stderr.strip()}")
        try:
            seed: Seed = reader(Path(mnt), device)
            return seed
        finally:
            subprocess.run(["umount", mnt], capture_output=True, check=False)


def find_disk() -> Seed | None:
    """The seed on a local disk (NoCloud first, then ConfigDrive), or None."""
    proc = subprocess.run(["blkid"], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    for labels, reader in ((NOCLOUD_LABELS, read_nocloud_dir),
                           (CONFIGDRIVE_LABELS, read_configdrive_dir)):
        for dev in labelled_devices(proc.stdout, labels):
            return _mounted(dev, reader)
    return None


def _fetch(url: str, optional: bool = False) -> bytes | None:
    # Imported here: urllib.request brings http, email and ssl, 0.4 s of the boot
    # under emulation (TCG), and only a URL seed needs it.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as r:
            data: bytes = r.read(MAX_SIZE + 1)
    except urllib.error.HTTPError as e:
        if optional and e.code == 404:
            return None
        raise SeedError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        if optional and isinstance(e, urllib.error.URLError) and url.startswith("file:"):
            return None
        raise SeedError(f"cannot fetch {url}: {getattr(e, 'reason', e)}") from None
    if len(data) > MAX_SIZE:
        raise SeedError(f"{url} is over {MAX_SIZE // 1048576} MiB")
    return data


def read_url(base: str) -> Seed:
    """The NoCloud seed at BASE (http://, https://, file://)."""
    meta = _fetch(base + "meta-data") or b""
    return _nocloud(base, meta.decode(errors="replace"), _fetch(base + "user-data") or b"",
                    _fetch(base + "network-config", optional=True))
