"""A container image made from MixOS packages, as a docker-archive: the tar `docker save`
writes and `podman load -i` reads. The VM test of podman (tests/vm/test_packages.py)
builds one on the host from the repository's busybox package, so a container runs with
no registry.

Layout of the archive (Docker's image format v1.2, one layer):

    manifest.json          [{"Config": "<id>.json", "RepoTags": [TAG], "Layers": [...]}]
    <id>.json              the image config: architecture, os, Cmd, Env, rootfs.diff_ids
    <diff_id>/layer.tar    the root file system, an uncompressed tar
    repositories           {name: {tag: <diff_id>}} (read by older loaders)

<id> is the sha256 of the config and <diff_id> that of layer.tar, which is what the
loader checks. The layer is deterministic: members sorted, owned by root, every mtime
SOURCE_DATE_EPOCH, so the same packages give the same image id."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mix.package import PackageReader
from mixbuild.common import BuildError, source_date_epoch

TAG_RE = re.compile(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

@dataclass(frozen=True)
class Entry:
    """One member of the image's root file system: a 'file' (with data), a 'dir' or a
    'symlink' (with target); path absolute."""

    path: str
    type: str
    mode: int = 0o755
    data: bytes = b""
    target: str = ""

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or ".." in self.path.split("/"):
            raise BuildError(f"container image: path {self.path!r} must be absolute, "
                             "without '..'")
        if self.type not in ("file", "dir", "symlink"):
            raise BuildError(f"container image: {self.path}: type {self.type!r} is not one "
                             "of file, dir, symlink")
        if self.type == "symlink" and not self.target:
            raise BuildError(f"container image: symlink {self.path} has no target")


# A merged-/usr root (MixOS's packages ship /usr/bin only) and the mount points the
# runtime expects; podman adds /etc/hosts, /etc/resolv.conf and /etc/hostname itself.
SKELETON = (
    Entry("/bin", "symlink", target="usr/bin"),
    Entry("/sbin", "symlink", target="usr/sbin"),
    *(Entry(p, "dir") for p in ("/dev", "/etc", "/proc", "/run", "/sys", "/usr",
                                "/usr/bin", "/usr/sbin", "/var")),
    Entry("/tmp", "dir", mode=0o1777),
    Entry("/root", "dir", mode=0o700),
)


def package_entries(package: Path) -> list[Entry]:
    """The files, directories and symlinks of one .mixpkg (its scripts are not run)."""
    out = []
    with PackageReader(package) as reader:
        for entry, stream, _mtime in reader.members():
            data = stream.read() if stream is not None else b""
            out.append(Entry(entry.path, entry.type, entry.mode, data, entry.target or ""))
        reader.finish()
    return out


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """The root file system as an uncompressed tar. A path given twice keeps its last
    entry (a package over the skeleton), so callers can override."""
    merged: dict[str, Entry] = {}
    for e in entries:
        merged[e.path.rstrip("/") or "/"] = e
    mtime = source_date_epoch()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(merged):
            e = merged[path]
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
            info.mode = e.mode & 0o7777
            if e.type == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.type == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.target, 0o777
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(out: Path, entries: Iterable[Entry], tag: str,
                         cmd: Sequence[str] = ("/bin/sh",)) -> str:
    """Write the image (SKELETON plus ENTRIES, tagged TAG, e.g. 'localhost/busybox:mixos')
    to OUT; return its image id (sha256 hex of the config), which `podman images
    --no-trunc` shows."""
    if not TAG_RE.match(tag):
        raise BuildError(f"container image: tag {tag!r} is not NAME:TAG in lower case "
                         "(e.g. localhost/busybox:mixos)")
    layer = layer_tar([*SKELETON, *entries])
    diff_id = hashlib.sha256(layer).hexdigest()
    mtime = source_date_epoch()
    created = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "mixbuild.containerimage"}],
    }, sort_keys=True).encode()
    image_id = hashlib.sha256(config).hexdigest()
    name, _, version = tag.rpartition(":")
    manifest = json.dumps([{"Config": f"{image_id}.json", "RepoTags": [tag],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    repositories = json.dumps({name: {version: diff_id}}).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, f"{diff_id}/layer.tar", layer, mtime)
        _add(tar, f"{image_id}.json", config, mtime)
        _add(tar, "manifest.json", manifest, mtime)
        _add(tar, "repositories", repositories, mtime)
    tmp.replace(out)
    return image_id
