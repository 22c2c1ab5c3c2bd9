"""install.yaml: the samples are valid, and every kind of mistake is refused with
the line, the key path and what was expected, before any disk is touched."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from mixinstall import config as c

PROJECT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0000000000000000000000000000000000000000000 t@x"


def parse(text: str) -> c.InstallConfig:
    return c.parse(text, "install.yaml")


def error(text: str) -> str:
    with pytest.raises(c.ConfigError) as e:
        parse(text)
    return str(e.value)


@pytest.mark.parametrize("name", ["install.yaml", "viso.yaml"])
def test_shipped_samples_are_valid(name: str) -> None:
    cfg = c.load(str(PROJECT / "packaging" / name))
    assert cfg.disk in ("auto", "/dev/loop0")


def test_sample_install_yaml_describes_a_full_system() -> None:
    cfg = c.load(str(PROJECT / "packaging" / "install.yaml"))
    assert cfg.users and cfg.users[0].ssh_keys and cfg.users[0].admin
    assert cfg.swap_size is not None and cfg.root_size.rest
    assert cfg.finish == "reboot" and cfg.packages


def test_minimal_file_gets_the_documented_defaults() -> None:
    cfg = parse("version: 1\ndisk: /dev/vda\n")
    assert (cfg.wipe, cfg.hostname, cfg.timezone, cfg.network.mode, cfg.finish) == \
        (False, "mixos", "UTC", "dhcp", "reboot")
    assert cfg.root_size.rest and cfg.swap_size is None and cfg.data_size is None
    assert cfg.grow_root and cfg.use_medium_repository
    assert not cfg.user_namespaces


def test_security_user_namespaces_switch() -> None:
    assert parse("version: 1\ndisk: /dev/vda\nsecurity: {user_namespaces: true}\n").user_namespaces
    assert "security.user_namespace: unknown key; the keys allowed here are: grub_password, " \
        "user_namespaces" in error("version: 1\ndisk: /dev/vda\nsecurity:\n  user_namespace: true\n")


def test_security_grub_password_must_be_a_pbkdf2_hash() -> None:
    assert "install.yaml:3: security.grub_password: expected the hash grub-mkpasswd-pbkdf2" in \
        error("version: 1\ndisk: /dev/vda\nsecurity: {grub_password: hunter2}\n")
    cfg = parse("version: 1\ndisk: /dev/vda\nsecurity:\n  grub_password: "
                "grub.pbkdf2.sha512.1000.AB12.CD34\n")
    assert cfg.grub_password == "grub.pbkdf2.sha512.1000.AB12.CD34"


def test_security_writes_the_user_namespace_drop_in_only_when_asked(tmp_path: Path) -> None:
    from mixinstall import system
    drop_in = tmp_path / system.USERNS_SYSCTL
    system.security(tmp_path, parse("version: 1\ndisk: /dev/vda\n"
                                     "security: {user_namespaces: true}\n"))
    assert "kernel.unprivileged_userns_clone = 1" in drop_in.read_text().splitlines()
    # The file sorts after mixos-hardening's, so the loader applies it last.
    shipped = [p.name for p in (PROJECT / "configs/security/sysctl.d").glob("*.conf")]
    assert max([*shipped, drop_in.name]) == drop_in.name
    system.security(tmp_path, parse("version: 1\ndisk: /dev/vda\n"))
    assert not drop_in.exists()


def test_sizes_parse_mib_gib_percent_and_rest() -> None:
    cfg = parse("version: 1\ndisk: auto\npartitions:\n  root: {size: 2GiB}\n"
                "  swap: {size: 512MiB}\n  data: {size: 25%, mount: /var/lib/data}\n")
    assert cfg.root_size == c.Size(mib=2048)
    assert cfg.swap_size == c.Size(mib=512)
    assert cfg.data_size == c.Size(percent=25) and cfg.data_mount == "/var/lib/data"


def test_unknown_key_names_its_line_path_and_the_allowed_keys() -> None:
    msg = error(f"version: 1\ndisk: /dev/vda\nusers:\n  - name: alice\n"
                f"    ssh_keys: ['{KEY}']\n    grups: [wheel]\n")
    assert msg.startswith("install.yaml:6: users[0].grups: unknown key")
    assert "groups" in msg


def test_wrong_type_names_expected_and_got() -> None:
    msg = error("version: 1\ndisk: /dev/vda\nwipe: yes please\n")
    assert msg.startswith("install.yaml:3: wipe: expected boolean")


def test_enum_lists_the_allowed_values() -> None:
    msg = error("version: 1\ndisk: /dev/vda\nfinish: halt\n")
    assert msg == 'install.yaml:3: finish: expected one of: "reboot", "poweroff", "none"'


def test_static_network_needs_an_address() -> None:
    msg = error("version: 1\ndisk: /dev/vda\nnetwork:\n  mode: static\n")
    assert msg.startswith("install.yaml:4: network: missing key: address")


def test_missing_disk_key() -> None:
    assert "missing key: disk" in error("version: 1\n")


def test_bad_size_and_bad_ssh_key_show_what_is_expected() -> None:
    assert "partitions.root.size: expected MiB or GiB" in \
        error("version: 1\ndisk: auto\npartitions:\n  root: {size: 10TB}\n")
    msg = error("version: 1\ndisk: auto\nusers:\n  - name: bob\n"
                "    ssh_keys: [ecdsa-sha2-nistp256 AAAA]\n")
    assert msg.startswith("install.yaml:5: users[0].ssh_keys[0]: expected one OpenSSH")


def test_other_schema_versions_are_refused() -> None:
    assert "version 2 is not supported" in error("version: 2\ndisk: auto\n")


def test_not_yaml_gives_the_line() -> None:
    assert error("version: 1\ndisk: [auto\n").startswith("install.yaml:")


def test_not_a_mapping() -> None:
    assert "expected a mapping" in error("- a\n- b\n")


def test_root_and_duplicate_users_are_refused() -> None:
    assert "root" in error("version: 1\ndisk: auto\nusers:\n  - name: root\n")
    assert "alice" in error("version: 1\ndisk: auto\nusers:\n  - name: alice\n  - name: alice\n")


def test_bad_hostname_and_device_path() -> None:
    assert error("version: 1\ndisk: auto\nhostname: -bad-\n").startswith("install.yaml:3: hostname")
    assert error("version: 1\ndisk: vda\n").startswith("install.yaml:2: disk")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(c.ConfigError, match="cannot read it"):
        c.load(str(tmp_path / "nope.yaml"))


def test_reads_file_and_http_urls(tmp_path: Path) -> None:
    (tmp_path / "install.yaml").write_text("version: 1\ndisk: /dev/vdb\nhostname: web1\n")
    assert c.load(f"file://{tmp_path}/install.yaml").hostname == "web1"

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(tmp_path), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert c.load(f"{url}/install.yaml").disk == "/dev/vdb"
        with pytest.raises(c.ConfigError, match="cannot fetch"):
            c.load(f"{url}/missing.yaml")
    finally:
        server.shutdown()


def test_other_url_schemes_are_refused() -> None:
    with pytest.raises(c.ConfigError, match="only http"):
        c.load("ftp://127.0.0.1/install.yaml")
