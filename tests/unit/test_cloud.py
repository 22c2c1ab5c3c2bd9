"""mixos-cloud without a VM: user-data parsing and validation, sudo rules as doas
rules, network-config v1/v2, the seed readers, and each step applied to a
directory standing for the root (tests/vm/test_cloud.py boots the real thing)."""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path

import pytest

from mixcloud import accounts, datasource, doas, files, network, state, system, userdata
from mixcloud.datasource import Seed
from mixcloud.stages import Cmdline, Machine, apply_local, final, local
from mixcloud.userdata import UserDataError

ISSUE = b"""#cloud-config
hostname: web1
users:
  - name: alice
    groups: [wheel]
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys: [ssh-ed25519 AAAAC3 alice@laptop]
packages: [nginx]
runcmd:
  - [sh, -c, "echo ran > /root/runcmd-ok"]
write_files:
  - {path: /etc/motd, content: hello}
"""


def test_the_issue_user_data_parses_to_every_key() -> None:
    c = userdata.parse(ISSUE)
    assert c.hostname == "web1"
    (alice,) = c.users
    assert (alice.name, alice.groups, alice.sudo) == ("alice", ("wheel",),
                                                     ("ALL=(ALL) NOPASSWD:ALL",))
    assert alice.ssh_keys == ("ssh-ed25519 AAAAC3 alice@laptop",) and alice.lock_passwd
    assert c.packages == ("nginx",)
    assert c.runcmd == (("sh", "-c", "echo ran > /root/runcmd-ok"),)
    assert c.write_files[0].path == "/etc/motd" and c.write_files[0].content == b"hello"
    assert c.unknown == ()


def test_unknown_keys_are_kept_by_name() -> None:
    c = userdata.parse(b"#cloud-config\napt: {}\nchpasswd: {expire: false}\nhostname: a\n")
    assert c.unknown == ("apt", "chpasswd") and c.hostname == "a"


@pytest.mark.parametrize("text,message", [
    (b"#cloud-config\nusers:\n  - name: bob\n    groups: [wheel\n", "not valid YAML at line"),
    (b"#cloud-config\n- a\n", "must be a mapping"),
    (b"hostname: x\n", "not #cloud-config nor a #! script"),
    (b"Content-Type: multipart/mixed\n", "MIME multi-part"),
    (b"#cloud-config\nusers: [{name: Bob}]\n", "users[0].name: 'Bob' is not a user name"),
    (b"#cloud-config\nusers: [{groups: [a]}]\n", "users[0]: a user needs a name"),
    (b"#cloud-config\nusers: [{name: a, passwd: secret, lock_passwd: false}]\n",
     "expected a crypt(3) hash"),
    (b"#cloud-config\nusers: [{name: a, sudo: 'web1=(ALL) ALL'}]\n",
     "host lists other than ALL"),
    (b"#cloud-config\nusers: [{name: a, expiredate: 2030-01-01}]\n",
     "unsupported user keys expiredate"),
    (b"#cloud-config\nusers: [a, a]\n", "users: a listed twice"),
    (b"#cloud-config\nssh_authorized_keys: [AAAA]\n", "not an SSH public key line"),
    (b"#cloud-config\nhostname: 'web_1'\n", "hostname: 'web_1' is not a host name"),
    (b"#cloud-config\ntimezone: ../../etc/shadow\n", "not a time zone name"),
    (b"#cloud-config\nwrite_files: [{path: etc/x, content: a}]\n", "expected an absolute path"),
    (b"#cloud-config\nwrite_files: [{path: /x, content: '!!', encoding: b64}]\n",
     "cannot decode it as b64"),
    (b"#cloud-config\nwrite_files: [{path: /x, encoding: rot13}]\n", "'rot13' is not one of"),
    (b"#cloud-config\nwrite_files: [{path: /x, permissions: '0999'}]\n", "octal mode"),
    (b"#cloud-config\nruncmd: echo hi\n", "runcmd: expected a list of commands"),
    (b"#cloud-config\npackages: ['nginx; rm -rf /']\n", "is not a package name"),
    (b"#cloud-config\npower_state: {mode: explode}\n", "power_state.mode: expected one of"),
    (b"#cloud-config\npower_state: {mode: reboot, delay: soon}\n", "power_state.delay"),
    (b"#cloud-config\nssh_pwauth: maybe\n", "ssh_pwauth: expected true or false"),
    (b"#cloud-config\nntp: {servers: ['a b']}\n", "is not a server name"),
])
def test_invalid_user_data_is_refused_naming_the_key(text: bytes, message: str) -> None:
    with pytest.raises(UserDataError) as e:
        userdata.parse(text)
    assert message in str(e.value)


def test_write_files_encodings_and_modes() -> None:
    gz64 = base64.b64encode(gzip.compress(b"zipped\n")).decode()
    c = userdata.parse(f"""#cloud-config
write_files:
  - {{path: /a, content: aGkK, encoding: b64, permissions: '0600', owner: 'alice:wheel'}}
  - {{path: /b, content: {gz64}, encoding: gz+b64, append: true, defer: true}}
""".encode())
    a, b = c.write_files
    assert (a.content, a.permissions, a.owner, a.append) == (b"hi\n", 0o600, "alice:wheel", False)
    assert (b.content, b.append, b.defer) == (b"zipped\n", True, True)


def test_other_keys_parse() -> None:
    c = userdata.parse(b"""#cloud-config
fqdn: web1.example.org
preserve_hostname: false
timezone: Europe/Paris
bootcmd: [echo boot]
package_update: true
apt_upgrade: true
ssh_pwauth: true
ntp: {servers: [ntp1.example.org], pools: [pool.example.org]}
power_state: {mode: reboot, delay: '+2', message: bye}
final_message: up after $UPTIME s
users: [default, {name: carol, lock_passwd: false, hashed_passwd: '$6$salt$hash'}]
""")
    assert c.fqdn == "web1.example.org" and c.timezone == "Europe/Paris"
    assert c.bootcmd == ("echo boot",) and c.package_update and c.package_upgrade
    assert c.ntp_servers == ("ntp1.example.org", "pool.example.org")
    assert c.power_state == userdata.PowerState("reboot", 120, "bye")
    assert [u.name for u in c.users] == ["mixos", "carol"]
    assert c.users[0].sudo == ("ALL=(ALL) NOPASSWD:ALL",) and "wheel" in c.users[0].groups
    assert accounts.has_password(c.users)


def test_a_script_and_gzip_and_empty_user_data() -> None:
    assert userdata.parse(b"#!/bin/sh\necho hi\n").script == "#!/bin/sh\necho hi\n"
    assert userdata.parse(gzip.compress(b"#cloud-config\nhostname: z\n")).hostname == "z"
    assert userdata.parse(b"") == userdata.CloudConfig()
    assert userdata.parse(b"#cloud-config\n") == userdata.CloudConfig()


@pytest.mark.parametrize("rule,lines", [
    ("ALL=(ALL) NOPASSWD:ALL", ["permit nopass alice"]),
    ("ALL=(ALL:ALL) ALL", ["permit alice"]),
    ("ALL=(root) NOPASSWD: /sbin/reboot, /bin/dmesg -c",
     ["permit nopass alice as root cmd /sbin/reboot",
      "permit nopass alice as root cmd /bin/dmesg args -c"]),
    ("ALL=NOPASSWD: ALL", ["permit nopass alice as root"]),
])
def test_sudo_rules_become_doas_rules(rule: str, lines: list[str]) -> None:
    assert doas.translate("alice", rule) == lines


@pytest.mark.parametrize("rule", ["ALL=(ALL) SETENV: ALL", "ALL=(ALL) NOPASSWD: reboot",
                                  "ALL=(ALL)", "garbage"])
def test_sudo_rules_doas_cannot_say_are_refused(rule: str) -> None:
    with pytest.raises(ValueError):
        doas.translate("alice", rule)


def fake_net(tmp_path: Path, **macs: str) -> Path:
    net = tmp_path / "sys-net"
    for name, mac in macs.items():
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
    return net


def test_network_v2_static_two_interfaces_by_mac_and_name(tmp_path: Path) -> None:
    cfg = network.parse(b"""network:
  version: 2
  ethernets:
    id0:
      match: {macaddress: "52:54:00:12:34:56"}
      set-name: lan0
      addresses: [192.168.50.10/24, "2001:db8::10/64"]
      routes: [{to: default, via: 192.168.50.1}]
      nameservers: {addresses: [192.168.50.1, 9.9.9.9], search: [example.org]}
    eth1:
      dhcp4: true
""")
    assert cfg is not None
    cmds, conf, warnings = network.plan(cfg, fake_net(tmp_path, eth0="52:54:00:12:34:56",
                                                      eth1="52:54:00:00:00:01"))
    assert cmds == [["link", "set", "dev", "eth0", "name", "lan0"],
                    ["link", "set", "dev", "lan0", "up"],
                    ["addr", "add", "192.168.50.10/24", "dev", "lan0"],
                    ["addr", "add", "2001:db8::10/64", "dev", "lan0"],
                    ["route", "add", "default", "via", "192.168.50.1", "dev", "lan0"],
                    ["link", "set", "dev", "eth1", "up"]]
    assert conf.splitlines()[-2:] == ["mode=dhcp", "interface=eth1"] and warnings == []
    assert network.resolv_conf(cfg) == ("# Written by mixos-cloud from the seed's "
                                        "network-config.\nnameserver 192.168.50.1\n"
                                        "nameserver 9.9.9.9\nsearch example.org\n")


def test_network_v1_static_with_netmask_and_nameserver(tmp_path: Path) -> None:
    cfg = network.parse(b"""version: 1
config:
  - type: physical
    name: eth0
    subnets:
      - {type: static, address: 10.1.0.5, netmask: 255.255.255.0, gateway: 10.1.0.1}
  - type: nameserver
    address: [10.1.0.53]
""")
    assert cfg is not None and cfg.dns == ("10.1.0.53",)
    cmds, conf, _ = network.plan(cfg, fake_net(tmp_path, eth0="52:54:00:12:34:56"))
    assert ["addr", "add", "10.1.0.5/24", "dev", "eth0"] in cmds
    assert ["route", "add", "default", "via", "10.1.0.1", "dev", "eth0"] in cmds
    assert conf.splitlines()[-1] == "mode=none"


def test_network_config_for_absent_interfaces_falls_back_to_dhcp(tmp_path: Path) -> None:
    cfg = network.parse(b"version: 2\nethernets:\n  ens9: {addresses: [10.0.0.2/8]}\n")
    assert cfg is not None
    cmds, conf, warnings = network.plan(cfg, fake_net(tmp_path, eth0="52:54:00:12:34:56"))
    assert (cmds, conf) == ([], "") and "no interface ens9" in warnings[0]
    assert network.parse(b"network: {config: disabled}\n") is None


@pytest.mark.parametrize("text,message", [
    (b"version: 3\n", "version 3 is not 1 or 2"),
    (b"version: 2\nethernets: {eth0: {addresses: [10.0.0.300/24]}}\n", "not an address/prefix"),
    (b"version: 2\nethernets: {eth0: {addresses: [10.0.0.3]}}\n", "has no prefix length"),
    (b"version: 2\nbonds: {bond0: {}}\n", "bonds: not supported"),
    (b"version: 2\nethernets: {eth0: {gateway4: nope}}\n", "not an IP address"),
    (b"version: 1\nconfig: [{type: bond, name: b}]\n", "'bond' is not supported"),
    (b"version: 2\nethernets: {x: {match: {macaddress: zz}}}\n", "is not a MAC address"),
    (b"[1, 2\n", "not valid YAML"),
])
def test_invalid_network_config_is_refused(text: bytes, message: str) -> None:
    with pytest.raises(network.NetworkConfigError) as e:
        network.parse(text)
    assert message in str(e.value)


def test_cmdline_keys_hostname_and_seed_url() -> None:
    key = base64.b64encode(b"ssh-ed25519 AAAA me").decode()
    c = Cmdline.parse(f"console=ttyS0 mixos.ssh_key={key} mixos.ssh_key=!!! mixos.hostname=h "
                      "ds=nocloud;s=http://10.0.2.2:8000")
    assert c.ssh_keys == ("ssh-ed25519 AAAA me",) and c.bad_keys == 1 and c.hostname == "h"
    assert c.seed_url == "http://10.0.2.2:8000/"
    assert datasource.cmdline_url("ds=nocloud-net;seedfrom=file:///srv/seed/") == \
        "file:///srv/seed/"
    assert datasource.cmdline_url("ds=nocloud") is None


def test_labelled_devices_from_blkid() -> None:
    out = ('/dev/vda1: UUID="x" TYPE="ext4"\n'
           '/dev/vdb: SEC_TYPE="msdos" LABEL_FATBOOT="CIDATA" LABEL="CIDATA" TYPE="vfat"\n'
           '/dev/sr1: LABEL="config-2" TYPE="iso9660"\n')
    assert datasource.labelled_devices(out, datasource.NOCLOUD_LABELS) == ["/dev/vdb"]
    assert datasource.labelled_devices(out, datasource.CONFIGDRIVE_LABELS) == ["/dev/sr1"]


def test_config_drive_and_nocloud_directories(tmp_path: Path) -> None:
    latest = tmp_path / "cd" / "openstack" / "latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(
        {"uuid": "u-1", "hostname": "drive1", "public_keys": {"k": "ssh-ed25519 AAAA k"}}))
    (latest / "user_data").write_text("#cloud-config\n")
    s = datasource.read_configdrive_dir(tmp_path / "cd", "/dev/vdb")
    assert (s.instance_id, s.local_hostname, s.public_keys) == ("u-1", "drive1",
                                                                ("ssh-ed25519 AAAA k",))
    nc = tmp_path / "nc"
    nc.mkdir()
    (nc / "meta-data").write_text("instance-id: i-9\nlocal-hostname: box\n")
    s = datasource.read_nocloud_dir(nc, "/dev/vdc")
    assert (s.instance_id, s.local_hostname, s.user_data, s.network_config) == \
        ("i-9", "box", b"", None)
    (nc / "meta-data").write_text("local-hostname: box\n")
    with pytest.raises(datasource.SeedError, match="no instance-id"):
        datasource.read_nocloud_dir(nc, "/dev/vdc")


def test_a_file_url_seed(tmp_path: Path) -> None:
    (tmp_path / "meta-data").write_text("instance-id: f-1\n")
    (tmp_path / "user-data").write_text("#cloud-config\nhostname: u\n")
    s = datasource.read_url(f"file://{tmp_path}/")
    assert s.instance_id == "f-1" and s.network_config is None and b"hostname: u" in s.user_data


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nwheel:x:10:\n")
    (root / "etc/shadow").write_text("root:*:1:0:99999:7:::\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tmixos\n")
    (root / "root").mkdir()
    return root


def test_users_are_made_once_and_updated_after(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    c = userdata.parse(ISSUE)
    accounts.apply_users(root, c.users, 20000)
    assert "alice:x:1000:1000::/home/alice:/bin/sh" in (root / "etc/passwd").read_text()
    assert "wheel:x:10:alice" in (root / "etc/group").read_text()
    assert "alice:*:20000:" in (root / "etc/shadow").read_text()
    auth = root / "home/alice/.ssh/authorized_keys"
    assert auth.read_text() == "ssh-ed25519 AAAAC3 alice@laptop\n"
    assert oct(auth.stat().st_mode & 0o777) == "0o600" and auth.stat().st_uid == 1000
    more = userdata.parse(b"#cloud-config\nusers: [{name: alice, groups: ops, "
                          b"ssh_authorized_keys: [ssh-ed25519 BBBB two]}]\n")
    accounts.apply_users(root, more.users, 20001)
    rows = (root / "etc/passwd").read_text().splitlines()
    assert [r for r in rows if r.startswith("alice:")] == [
        "alice:x:1000:1000::/home/alice:/bin/sh"]
    assert "ops:x:100:alice" in (root / "etc/group").read_text()
    assert auth.read_text().splitlines() == ["ssh-ed25519 AAAAC3 alice@laptop",
                                             "ssh-ed25519 BBBB two"]


def test_a_password_hash_only_when_unlocked(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    c = userdata.parse(b"#cloud-config\nusers:\n - {name: a, hashed_passwd: '$6$x$y'}\n"
                       b" - {name: b, hashed_passwd: '$6$x$z', lock_passwd: false}\n")
    accounts.apply_users(root, c.users, 1)
    shadow = (root / "etc/shadow").read_text()
    assert "a:*:" in shadow and "b:$6$x$z:" in shadow


def test_doas_block_is_replaced_not_piled_up(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "etc/doas.conf").write_text("permit nopass :wheel\n")
    accounts.apply_doas(root, ["permit nopass alice"])
    accounts.apply_doas(root, ["permit bob"])
    text = (root / "etc/doas.conf").read_text()
    assert text.startswith("permit nopass :wheel\n") and "alice" not in text
    assert "permit bob" in text and oct((root / "etc/doas.conf").stat().st_mode)[-3:] == "600"


def test_write_files_owner_append_and_mode(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    accounts.apply_users(root, userdata.parse(ISSUE).users, 1)
    c = userdata.parse(b"#cloud-config\nwrite_files:\n"
                       b" - {path: /etc/app.conf, content: \"a\\n\", owner: 'alice:wheel',"
                       b" permissions: '0640'}\n"
                       b" - {path: /etc/app.conf, content: \"b\\n\", append: true,"
                       b" owner: 'alice:wheel', permissions: '0640'}\n")
    for f in c.write_files:
        files.write(root, f)
    st = (root / "etc/app.conf").stat()
    assert (root / "etc/app.conf").read_text() == "a\nb\n"
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 10, 0o640)
    with pytest.raises(ValueError, match="no user 'nobody2'"):
        files.write(root, userdata.WriteFile(path="/x", content=b"", owner="nobody2"))


def test_hostname_timezone_ntp_and_pwauth(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert system.choose_hostname("", "web1.example.org", "meta") == ("web1", "web1.example.org")
    assert system.choose_hostname("", "", "meta") == ("meta", "")
    system.write_hostname(root, "web1", "web1.example.org")
    assert (root / "etc/hostname").read_text() == "web1\n"
    assert (root / "etc/hosts").read_text() == \
        "127.0.0.1\tlocalhost\n127.0.1.1\tweb1.example.org\tweb1\n"
    assert "no zone file" in (system.timezone(root, "Europe/Paris") or "")
    (root / "etc/mixos").mkdir()
    (root / "etc/mixos/ntp.conf").write_text('servers=""\nfallback="x"\n')
    system.ntp_servers(root, ("a.example", "b.example"))
    text = (root / "etc/mixos/ntp.conf").read_text()
    assert 'servers="a.example b.example"' in text and 'fallback="x"' in text
    system.ssh_pwauth(root, True)
    assert "PasswordAuthentication yes" in (root / system.SSHD_DROPIN).read_text()
    system.ssh_pwauth(root, False)
    assert not (root / system.SSHD_DROPIN).exists()


class DirMachine(Machine):
    """The stages' machine for a directory root: the seed is given, the kernel's
    host name and ip(8) calls are kept for the test to read."""

    def __init__(self, seed: Seed | None) -> None:
        self.seed = seed
        self.hostnames: list[str] = []
        self.ip_calls: list[list[str]] = []

    def find_seed(self) -> Seed | None:
        return self.seed

    def set_hostname(self, name: str) -> None:
        self.hostnames.append(name)

    def ip(self, args: list[str]) -> None:
        self.ip_calls.append(args)


def test_stages_run_per_instance_steps_once_per_instance(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    marker = tmp_path / "runs"
    ud = (b"#cloud-config\nhostname: web1\nruncmd:\n - echo $INSTANCE_ID >> " +
          str(marker).encode() + b"\nbootcmd:\n - 'true'\nwrite_files:\n"
          b" - {path: /etc/motd, content: one}\nssh_authorized_keys: [ssh-ed25519 AAAA r]\n")
    first = Seed(datasource="NoCloud test", instance_id="i-1", user_data=ud)
    for _ in range(2):  # a first boot, then a reboot
        m = DirMachine(first)
        local(root, "console=ttyS0", m)
        final(root, "console=ttyS0", m)
        assert m.hostnames == ["web1"]
        assert state.read_status(root)["status"] == "done"  # type: ignore[index]
    assert marker.read_text() == "i-1\n"
    assert (root / "root/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAA r\n"
    (root / "etc/motd").write_text("changed by the admin")
    second = Seed(datasource="NoCloud test", instance_id="i-2", user_data=ud)
    local(root, "", DirMachine(second))
    final(root, "", DirMachine(second))
    assert marker.read_text() == "i-1\ni-2\n"
    assert (root / "etc/motd").read_text() == "one"
    assert "new instance i-2 (previous: i-1)" in (root / state.LOG).read_text()


def test_bad_user_data_applies_nothing_but_the_rest_still_works(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    bad = Seed(datasource="NoCloud test", instance_id="i-1", local_hostname="fromseed",
               user_data=b"#cloud-config\nruncmd: [touch /x\n",
               network_config=b"version: 2\nethernets: {eth0: {addresses: [10.0.0.5/24]}}\n")
    key = base64.b64encode(b"ssh-ed25519 AAAA cmd").decode()
    m = DirMachine(bad)
    run = local(root, f"mixos.ssh_key={key}", m)
    assert [f["step"] for f in run.failures] == ["user-data"]
    assert "not valid YAML at line 3" in run.failures[0]["error"]
    assert m.hostnames == ["fromseed"]
    assert (root / "root/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAA cmd\n"
    final(root, "", m)
    st = state.read_status(root)
    assert st is not None and st["status"] == "failed"
    assert not (root / state.STATE / "instances/i-1/done/users").exists()


def test_network_config_is_applied_and_handed_to_the_network_step(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    s = Seed(datasource="t", instance_id="i-1",
             network_config=b"version: 2\nethernets:\n  eth0:\n    addresses: [10.0.0.5/24]\n"
                            b"    nameservers: {addresses: [10.0.0.53]}\n")
    m = DirMachine(s)
    run = state.Run(root, "local", console=False)
    apply_local(run, s, m, Cmdline(), sys_net=fake_net(tmp_path, eth0="52:54:00:12:34:56"))
    assert ["addr", "add", "10.0.0.5/24", "dev", "eth0"] in m.ip_calls
    assert (root / network.RUN_CONF).read_text().splitlines()[-1] == "mode=none"
    assert "nameserver 10.0.0.53" in (root / "etc/resolv.conf").read_text()


def test_status_cli_reports_failures_with_their_step(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mixcloud.cli import main
    root = fake_root(tmp_path)
    assert main(["--root", str(root), "status"]) == 2
    assert "not started" in capsys.readouterr().out
    run = state.Run(root, "final", instance_id="i-1", console=False)
    run.fail("runcmd", "runcmd[0] exited 1")
    run.write_status(state.DONE)
    assert main(["--root", str(root), "status"]) == 1
    out = capsys.readouterr().out
    assert "status: failed" in out and "step runcmd: runcmd[0] exited 1" in out
    assert os.path.exists(root / state.LOG)


def test_status_says_disabled_when_the_boot_had_nothing_to_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixcloud.cli import main
    root = fake_root(tmp_path)
    (root / state.DISABLED_MARK).parent.mkdir(parents=True)
    (root / state.DISABLED_MARK).touch()
    assert main(["--root", str(root), "status"]) == 0
    assert "status: disabled (no seed disk" in capsys.readouterr().out


def test_mixcloud_imports_only_what_the_trimmed_python_runtime_ships() -> None:
    # The python3 recipe traces mix and the installer, not mixos-cloud: this
    # keeps mixos-cloud inside the same module list.
    from mixbuild.common import PROJECT
    from mixbuild.packages import pyruntime
    src = PROJECT / "src" / "mixcloud"
    listed = set(pyruntime.read_module_list(PROJECT / "packages/python3/modules.txt"))
    listed |= set(pyruntime.BASE_MODULES)
    missing = [m for m in pyruntime.mix_stdlib_imports(src)
               if m not in listed and m.split(".")[0] not in listed
               and m not in ("sys", "time")]  # built into every CPython
    assert missing == [], f"add {missing} to packages/python3/modules.txt"
