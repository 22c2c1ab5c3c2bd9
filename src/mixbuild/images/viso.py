"""`make viso`: the VISO, MixOS installed on a virtual disk and shipped as a
compressed qcow2 image (artifacts/mixos-<version>.viso), the cloud-image way.

The same installer as the unattended ISO (src/mixinstall) runs here on the build
host, onto a sparse raw image attached to a loop device, with packaging/viso.yaml
as its install.yaml and the build's signed repository as its source; then
`qemu-img convert -c` compresses it. Boot it with

    qemu-system-x86_64 -m 256M -nographic \\
        -drive file=mixos-<version>.viso,format=qcow2,if=virtio,cache=writeback,aio=threads

(SeaBIOS or OVMF). Its root partition grows to the disk at boot after
`qemu-img resize`; SSH keys come from a cloud-init NoCloud seed or mixos.ssh_key=.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from mixbuild.common import ARTIFACTS, PROJECT, BuildError, cache_dir, cache_lock, log, run, step
from mixbuild.images.iso import project_version
from mixbuild.images.rootfs import REPO, host_mix

VISO_CONFIG = PROJECT / "packaging" / "viso.yaml"
# The image's virtual size: room for the system and upgrades; `qemu-img resize`
# makes it bigger, and the first boot after that grows the root file system.
VIRTUAL_MIB = 1024


def inputs_key(config_text: str, size_mib: int) -> str:
    h = hashlib.sha256()
    index = REPO / "index.json"
    h.update(index.read_bytes() if index.is_file() else b"")
    h.update(config_text.encode())
    h.update(str(size_mib).encode())
    for src in sorted((PROJECT / "src" / "mixinstall").glob("*")) + \
            sorted((PROJECT / "src" / "mixboot").glob("*.py")) + [Path(__file__)]:
        if src.is_file():
            h.update(src.name.encode() + src.read_bytes())
    return h.hexdigest()


def build(config_path: Path, output: Path, size_mib: int = VIRTUAL_MIB) -> Path:
    from mixinstall import config as configmod
    from mixinstall import install as installer
    from mixinstall.steps import InstallError, Progress

    if not (REPO / "index.json").is_file():
        raise BuildError(f"{REPO}/index.json does not exist; run 'make packages' first")
    text = config_path.read_text()
    key = inputs_key(text, size_mib)
    stamp = output.with_name(output.name + ".inputs")
    if output.is_file() and stamp.is_file() and stamp.read_text() == key:
        log(f"{output.name} is up to date")
        return output
    pub = cache_dir() / "keys" / "mixos-repo.pub"
    if not pub.is_file():
        raise BuildError(f"{pub} does not exist; run 'make packages' first")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mixos-viso-", dir=output.parent) as tmp_s:
        tmp = Path(tmp_s)
        raw = tmp / "disk.raw"
        with raw.open("wb") as f:
            f.truncate(size_mib * 1024 * 1024)
        loop = run(["losetup", "--find", "--show", "--partscan", raw], capture=True).stdout.strip()
        try:
            try:
                config = configmod.parse(text, str(config_path))
            except configmod.ConfigError as e:
                raise BuildError(str(e)) from None
            config = dataclasses.replace(config, disk=loop)
            keys = tmp / "keys"
            keys.mkdir()
            (keys / pub.name).write_bytes(pub.read_bytes())
            sources = installer.Sources(repos=(f"file://{REPO}",), keys_dirs=(keys,),
                                        mix=tuple(host_mix()))
            with step(f"Installing MixOS onto {loop} ({size_mib} MiB image)"):
                try:
                    installer.install(config, tmp / "target", Progress(), sources=sources)
                except InstallError as e:
                    raise BuildError(f"installing onto the VISO image failed: {e}") from None
        finally:
            run(["losetup", "--detach", loop])
        with step(f"Compressing into {output.name} (qcow2)"):
            partial = output.with_name(output.name + ".partial")
            run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, partial],
                timeout=900)
            partial.replace(output)
    stamp.write_text(key)
    info = json.loads(run(["qemu-img", "info", "--output=json", output], capture=True).stdout)
    log(f"{output.name}: {output.stat().st_size / 2**20:.1f} MiB on disk, "
        f"{info['virtual-size'] / 2**20:.0f} MiB virtual")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild viso", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=VISO_CONFIG,
                        help="install.yaml for the image (its disk: is replaced)")
    parser.add_argument("--size", type=int, default=VIRTUAL_MIB, help="virtual size in MiB")
    parser.add_argument("-o", "--output", type=Path,
                        help="default: artifacts/mixos-<version>.viso")
    args = parser.parse_args(argv)
    output = args.output or ARTIFACTS / f"mixos-{project_version()}.viso"
    try:
        with cache_lock("packages"):  # not while a packages build rewrites the repository
            build(args.config, output, args.size)
    except BuildError as e:
        print(f"mixbuild viso: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
