"""`make run` / `mix viso boot --ssh-key`: from an image file to a root shell over
SSH, for the ISO, the VISO and the SDISK. Each boots the Machine `mix viso boot`
builds (mix.viso.machine_for, from what `mix viso info` read in the file), with
the NoCloud seed it makes for a key (mixboot.seed), through the VM tests'
harness (serial console captured, bounded waits); the console is plain stdio
here, where `mix viso boot` hands the user QEMU's mon:stdio.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Images, KeyPair, StartMachine

from mix.viso import machine_for
from mixboot import seed
from mixboot.imageinfo import inspect

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def user_seed(vm_workdir: Path, ssh_keypair: KeyPair) -> Path:
    # As `mix viso boot --ssh-key` makes it: no host name, an instance id from the key.
    return seed.make_seed(vm_workdir / "run-seed.img", [ssh_keypair.public])


@pytest.mark.parametrize("which", ["iso", "viso", "sdisk"])
def test_mix_viso_boot_gives_root_a_shell_over_ssh(
        which: str, request: pytest.FixtureRequest, mixos_images: Images, user_seed: Path,
        start_machine: StartMachine) -> None:
    image = {"iso": lambda: mixos_images.iso,
             "viso": lambda: request.getfixturevalue("viso_image"),
             "sdisk": lambda: request.getfixturevalue("sdisk_image")}[which]()
    info = inspect(image, with_sha256=False)
    assert info.kind == which
    # snapshot: the image stays as built, as with `make run`.
    g = start_machine(lambda port, accel: machine_for(
        info, accel=accel, snapshot=True, seed=user_seed, ssh_port=port, serial="stdio"))
    assert g.sh("id -u").strip() == "0"
    if info.version:  # (an SDISK's version is that of the image booted from it)
        assert f"VERSION_ID={info.version}" in g.sh("cat /etc/os-release")
