"""Cloud-init seeds as users make them (cloud-localds, and by hand), read by
mixos-cloud: the issue's user-data (a user with a key and a sudo rule, packages,
runcmd, write_files), network-config v2 with static addresses on two NICs, an
OpenStack config drive, a NoCloud URL on the kernel command line, malformed
user-data, and per-instance semantics on the VISO (a reboot does not re-run
runcmd; a new instance id does).
"""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Guest, Images, KeyPair, StartMachine, overlay

from mixboot import seed
from mixbuild.images import iso as iso_stage
from mixbuild.vm.qemu import DIRECT_MACHINE, Drive, Machine

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

STATUS_WAIT = "mixos-cloud status --wait 600"
SECOND_MAC = "52:54:00:00:77:10"


def cloud_localds(out: Path, user_data: str, meta_data: str,
                  network_config: str | None = None) -> Path:
    """A NoCloud seed made by Debian's cloud-localds (an ISO 9660 image, label cidata)."""
    if shutil.which("cloud-localds") is None:
        pytest.fail("cloud-localds not found: run 'make deps' (package cloud-image-utils)",
                    pytrace=False)
    d = out.with_suffix(".d")
    d.mkdir(parents=True, exist_ok=True)
    (d / "user-data").write_text(user_data)
    (d / "meta-data").write_text(meta_data)
    argv = ["cloud-localds", str(out), str(d / "user-data"), str(d / "meta-data")]
    if network_config is not None:
        (d / "network-config").write_text(network_config)
        argv[1:1] = ["-N", str(d / "network-config")]
    subprocess.run(argv, check=True, capture_output=True)
    return out


def issue_user_data(key: str) -> str:
    return f"""#cloud-config
hostname: web1
users:
  - name: alice
    groups: [wheel]
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys: [{key}]
packages: [nginx]
runcmd:
  - [sh, -c, "echo ran > /root/runcmd-ok"]
write_files:
  - {{path: /etc/motd, content: hello}}
"""


def iso_machine(images: Images, *disks: Path, extra: tuple[str, ...] = ()
                ) -> Callable[[int, str], Machine]:
    return lambda port, accel: Machine(accel=accel, iso=images.iso, ssh_port=port,
                                       disks=disks, extra=extra)


def direct_machine(images: Images, append: str, *disks: Path) -> Callable[[int, str], Machine]:
    args = iso_stage.kernel_args(f"{iso_stage.entry_args('normal')} {append}")
    return lambda port, accel: Machine(accel=accel, kernel=images.kernel, initrd=images.initrd,
                                       machine=DIRECT_MACHINE, append=args, iso=images.iso,
                                       ssh_port=port, disks=disks)


def log(g: Guest) -> str:
    return g.sh("cat /var/log/cloud-init.log")


def test_issue_user_data_from_cloud_localds(mixos_images: Images, vm_workdir: Path,
                                            ssh_keypair: KeyPair, start_machine: StartMachine,
                                            boot_metrics: dict[str, object]) -> None:
    disk = cloud_localds(vm_workdir / "cloud-issue.iso", issue_user_data(ssh_keypair.public),
                         "instance-id: issue-15\n")
    g = start_machine(iso_machine(mixos_images, disk), user="alice")
    boot_metrics["cloud_iso_login_prompt_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["cloud_iso_ssh_alice_s"] = round(g.ssh_seconds or 0, 2)
    assert g.sh("id -un").strip() == "alice"
    assert "wheel" in g.sh("id -Gn")
    out = g.ssh(STATUS_WAIT, timeout=660, check=False)
    assert out.returncode == 0, f"{out.stdout}\n{g.ssh('cat /var/log/cloud-init.log').stdout}"
    assert "status: done" in out.stdout
    assert g.sh("hostname").strip() == "web1"
    assert g.sh("cat /etc/motd") == "hello"
    # alice becomes root through the doas rule made from her sudo: rule
    assert g.sh("doas id -u").strip() == "0"
    assert "permit nopass alice" in g.sh("doas cat /etc/doas.conf")
    assert g.sh("doas cat /root/runcmd-ok").strip() == "ran"
    # nginx from the medium's repository
    assert "nginx" in g.sh("mix list --installed")
    assert g.sh("doas /usr/sbin/nginx -v 2>&1").startswith("nginx version")
    text = g.sh("doas cat /var/log/cloud-init.log")
    assert "runcmd: done" in text and "packages: done" in text


def test_network_config_v2_static_two_nics(mixos_images: Images, vm_workdir: Path,
                                           ssh_keypair: KeyPair,
                                           start_machine: StartMachine) -> None:
    net = f"""version: 2
ethernets:
  primary:
    match: {{macaddress: "52:54:00:12:34:56"}}
    addresses: [10.0.2.15/24]
    gateway4: 10.0.2.2
    nameservers: {{addresses: [10.0.2.3], search: [cloud.test]}}
  second:
    match: {{macaddress: "{SECOND_MAC}"}}
    addresses: [192.168.77.10/24]
"""
    disk = cloud_localds(vm_workdir / "cloud-net.iso",
                         f"#cloud-config\nssh_authorized_keys: ['{ssh_keypair.public}']\n",
                         "instance-id: net-1\nlocal-hostname: netvm\n", net)
    www = vm_workdir / "www-net"
    www.mkdir(exist_ok=True)
    (www / "probe.txt").write_text("through the second NIC\n")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(www))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        extra = ("-netdev", "user,id=net1,net=192.168.77.0/24",
                 "-device", f"virtio-net-pci,netdev=net1,mac={SECOND_MAC},romfile=")
        g = start_machine(iso_machine(mixos_images, disk, extra=extra))
        g.sh(STATUS_WAIT, timeout=660)
        addrs = g.sh("ip -4 -o addr show")
        assert "10.0.2.15/24" in addrs and "192.168.77.10/24" in addrs, addrs
        assert "default via 10.0.2.2" in g.sh("ip route")
        resolv = g.sh("cat /etc/resolv.conf")
        assert "nameserver 10.0.2.3" in resolv and "search cloud.test" in resolv
        # No DHCP client: every interface is configured from the seed.
        assert g.ssh("pidof udhcpc", check=False).returncode != 0
        assert g.sh("cat /run/mixos/network.conf").splitlines()[-1] == "mode=none"
        # The host, as QEMU's second user network's gateway sees it.
        got = g.sh(f"wget -q -O - http://192.168.77.2:{server.server_port}/probe.txt")
        assert got == "through the second NIC\n"
    finally:
        server.shutdown()


def test_config_drive(mixos_images: Images, vm_workdir: Path, ssh_keypair: KeyPair,
                      start_machine: StartMachine) -> None:
    meta = ('{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "drive1", '
            f'"public_keys": {{"mykey": "{ssh_keypair.public}"}}}}')
    user = "#cloud-config\nwrite_files:\n  - path: /etc/from-drive\n    content: aGVsbG8K\n" \
           "    encoding: b64\n    permissions: '0600'\ntimezone: UTC\nbogus_key: 1\n"
    disk = seed.write_fat(vm_workdir / "config-drive.img",
                          {"openstack/latest/meta_data.json": meta.encode(),
                           "openstack/latest/user_data": user.encode()}, label="config-2")
    g = start_machine(iso_machine(mixos_images, disk))
    out = g.sh(STATUS_WAIT, timeout=660)
    assert "datasource: ConfigDrive /dev/vd" in out
    assert "instance: 83679162-1378-4288-a2d4-70e13ec132aa" in out
    assert g.sh("hostname").strip() == "drive1"
    assert g.sh("cat /etc/from-drive") == "hello\n"
    assert g.sh("stat -c %a /etc/from-drive").strip() == "600"
    assert "keys not supported by MixOS, ignored: bogus_key" in log(g)


def test_nocloud_url_on_the_kernel_command_line(mixos_images: Images, vm_workdir: Path,
                                                ssh_keypair: KeyPair,
                                                start_machine: StartMachine) -> None:
    www = vm_workdir / "www-seed"
    www.mkdir(exist_ok=True)
    (www / "meta-data").write_text("instance-id: url-1\nlocal-hostname: fromurl\n")
    (www / "user-data").write_text(
        f"#cloud-config\nssh_authorized_keys: ['{ssh_keypair.public}']\n"
        "runcmd:\n  - echo from-url > /root/url-ok\n")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(www))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Root logs in with the key given on the command line too; the seed's key
        # arrives later, once the network is up.
        key = base64.b64encode(ssh_keypair.public.encode()).decode()
        append = f"ds=nocloud;s=http://10.0.2.2:{server.server_port}/ mixos.ssh_key={key}"
        g = start_machine(direct_machine(mixos_images, append))
        out = g.sh(STATUS_WAIT, timeout=660)
        assert "status: done" in out and f"NoCloud http://10.0.2.2:{server.server_port}/" in out
        assert g.sh("cat /root/url-ok").strip() == "from-url"
        assert g.sh("hostname").strip() == "fromurl"
    finally:
        server.shutdown()


def test_malformed_user_data_is_refused_and_the_system_boots(
        mixos_images: Images, vm_workdir: Path, ssh_keypair: KeyPair,
        start_machine: StartMachine) -> None:
    bad = "#cloud-config\nusers:\n  - name: bob\n    groups: [wheel\nruncmd:\n  - touch /root/x\n"
    disk = seed.write_fat(vm_workdir / "cloud-bad.img",
                          {"user-data": bad.encode(), "meta-data": b"instance-id: bad-1\n"})
    key = base64.b64encode(ssh_keypair.public.encode()).decode()
    g = start_machine(direct_machine(mixos_images, f"mixos.ssh_key={key} mixos.hostname=kept",
                                     disk))
    out = g.ssh(STATUS_WAIT, timeout=660, check=False)
    assert out.returncode == 1, out.stdout
    assert "status: failed" in out.stdout
    assert "step user-data: user-data is not valid YAML at line" in out.stdout
    text = log(g)
    assert "user-data: FAILED: user-data is not valid YAML at line" in text
    assert "nothing of the user-data was applied" in text
    assert "cloud: user-data: FAILED" in g.vm.console()
    assert g.ssh("test -e /root/x", check=False).returncode != 0
    assert g.ssh("grep -q '^bob:' /etc/passwd", check=False).returncode != 0
    assert g.sh("hostname").strip() == "kept"


def test_viso_runcmd_once_per_instance(viso_image: Path, vm_workdir: Path, ssh_keypair: KeyPair,
                                       start_machine: StartMachine) -> None:
    def user_data(marker: str) -> str:
        return (f"#cloud-config\nssh_authorized_keys: ['{ssh_keypair.public}']\n"
                "runcmd:\n  - echo \"$INSTANCE_ID\" >> /root/runcmd-runs\n"
                f"write_files:\n  - {{path: /etc/motd, content: \"{marker}\\n\"}}\n"
                "bootcmd:\n  - echo boot >> /root/bootcmd-runs\n")

    first = cloud_localds(vm_workdir / "viso-i1.iso", user_data("first"), "instance-id: i-1\n")
    second = cloud_localds(vm_workdir / "viso-i2.iso", user_data("second"), "instance-id: i-2\n")
    disk = overlay(viso_image, vm_workdir / "viso-cloud.qcow2")

    def machine(s: Path) -> Callable[[int, str], Machine]:
        return lambda port, accel: Machine(accel=accel, drives=(Drive(disk),), ssh_port=port,
                                           disks=(s,))

    def boot(s: Path, name: str) -> Iterator[Guest]:
        g = start_machine(machine(s), name=name)
        g.sh(STATUS_WAIT, timeout=660)
        yield g
        assert g.poweroff() == 0

    for g in boot(first, "viso-cloud-1"):
        assert g.sh("cat /root/runcmd-runs") == "i-1\n"
        assert g.sh("cat /etc/motd") == "first\n"
    for g in boot(first, "viso-cloud-2"):  # a reboot: per-instance steps do not run
        assert g.sh("cat /root/runcmd-runs") == "i-1\n"
        assert g.sh("cat /root/bootcmd-runs") == "boot\nboot\n"  # bootcmd: every boot
        assert "runcmd: already done for instance i-1" in log(g)
    for g in boot(second, "viso-cloud-3"):  # a new instance id on the same disk
        assert g.sh("cat /root/runcmd-runs") == "i-1\ni-2\n"
        assert g.sh("cat /etc/motd") == "second\n"
        assert "new instance i-2 (previous: i-1)" in log(g)
