"""NoCloud seeds: the small disk that hands a MixOS VM its SSH keys and host name.

A cloud-init NoCloud seed is a file system labelled CIDATA (or cidata) holding
two files (three with network-config); MixOS reads it at boot (mixos-cloud,
src/mixcloud; docs/boot.md "Cloud-init") and gives the keys to root:

    user-data   #cloud-config
                ssh_authorized_keys:
                  - "ssh-ed25519 AAAA... me@host"
    meta-data   instance-id: ...
                local-hostname: ...   (optional)

The seed is a 2 MiB FAT image made by mkfs.vfat and filled by mcopy (Debian's
and MixOS's packages dosfstools and mtools): no root and no mount needed. The VM
tests and `mix viso boot --ssh-key` both make theirs here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

LABEL = "CIDATA"
SIZE_KIB = 2048
KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")
TOOLS = {"mkfs.vfat": "dosfstools", "mcopy": "mtools", "mmd": "mtools"}


class SeedError(ValueError):
    """The seed cannot be made; the message says from which input and why."""


def read_public_keys(path: Path) -> list[str]:
    """The public keys in PATH (an authorized_keys-style file, e.g. id_ed25519.pub)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SeedError(f"{path}: no such file; give an SSH public key "
                        "(ssh-keygen -t ed25519 makes ~/.ssh/id_ed25519.pub)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SeedError(f"{path}: cannot read it as an SSH public key ({e})") from None
    if "PRIVATE KEY" in text:
        raise SeedError(f"{path} is a private key; give its public half ({path}.pub)")
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    bad = [k for k in keys if not k.startswith(KEY_TYPES)]
    if not keys or bad:
        raise SeedError(f"{path}: not an SSH public key file (each line should start with "
                        f"ssh-ed25519, ssh-rsa, ecdsa-...; found {(bad or [''])[0][:30]!r})")
    return keys


def user_data(keys: Sequence[str]) -> str:
    items = "".join(f'  - "{k}"\n' for k in keys)
    return f"#cloud-config\nssh_authorized_keys:\n{items}"


def meta_data(instance_id: str, hostname: str | None = None) -> str:
    text = f"instance-id: {instance_id}\n"
    return text + (f"local-hostname: {hostname}\n" if hostname else "")


def make_seed(path: Path, keys: Sequence[str], hostname: str | None = None) -> Path:
    """Write a NoCloud seed authorizing KEYS for root to PATH (replaced whole:
    written under a temporary name, then renamed)."""
    instance = hostname or "mixos-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    return write_fat(path, {"user-data": user_data(keys).encode(),
                            "meta-data": meta_data(instance, hostname).encode()})


def write_fat(path: Path, files: Mapping[str, bytes], label: str = LABEL) -> Path:
    """A FAT seed image at PATH labelled LABEL holding FILES (relative path ->
    content; "openstack/latest/user_data" makes its directories): a NoCloud seed,
    or with label config-2 an OpenStack config drive. Replaced whole."""
    missing = [f"{tool} (package {pkg})" for tool, pkg in TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        raise SeedError(f"making a NoCloud seed needs {' and '.join(missing)}; install "
                        f"{' and '.join(sorted(set(TOOLS.values())))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mixos-seed-", dir=path.parent) as tmp_s:
        tmp = Path(tmp_s)
        image = tmp / "seed.img"
        _run(["mkfs.vfat", "-n", label, "-C", str(image), str(SIZE_KIB)])
        made: set[str] = set()
        for n, (name, content) in enumerate(sorted(files.items())):
            parts = name.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made:
                    _run(["mmd", "-i", str(image), f"::{d}"])
                    made.add(d)
            src = tmp / f"file-{n}"
            src.write_bytes(content)
            _run(["mcopy", "-i", str(image), str(src), f"::{name}"])
        os.replace(image, path)
    return path


def _run(argv: list[str]) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as e:
        raise SeedError(f"making the NoCloud seed failed: {' '.join(argv)} exited "
                        f"{e.returncode}: {e.stderr.strip()}") from None


def cache_path(keys: Sequence[str]) -> Path:
    """Where `mix viso boot --ssh-key` keeps the seed for KEYS: one file per set of
    keys, reused by the next boot, so that the printed command line stays valid."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mixos" / "seeds"
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    return base / f"seed-{digest}.img"
