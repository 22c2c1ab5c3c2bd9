"""What mix does about the AppArmor profiles a package ships (src/mix/apparmor.py): which
of its paths are profiles, and that on another root nothing is loaded (the boot's
mixos-apparmor loads them there). Loading on the running system is proven in a VM
(tests/vm/test_packages.py, test_daemons_confined_and_closed_until_allowed)."""

from __future__ import annotations

from pathlib import Path

from mix import apparmor


def test_profiles_are_the_files_at_the_top_of_etc_apparmor_d() -> None:
    paths = ["/etc/apparmor.d/redis", "/etc/apparmor.d/tunables/mixos",
             "/etc/apparmor.d/abi/3.0", "/etc/apparmor.d", "/etc/sv/redis/run",
             "/usr/share/apparmor.d/x", "/etc/apparmor.d/usr.sbin.sshd"]
    assert apparmor.profiles(paths) == ["/etc/apparmor.d/redis",
                                        "/etc/apparmor.d/usr.sbin.sshd"]


def test_nothing_is_loaded_or_unloaded_on_another_root(tmp_path: Path) -> None:
    paths = ["/etc/apparmor.d/redis"]
    assert apparmor.installed(tmp_path, paths) == ""
    assert apparmor.removing(tmp_path, paths) == ""


def test_a_package_without_profiles_needs_nothing() -> None:
    assert apparmor.installed(Path("/"), ["/usr/bin/jq"]) == ""
    assert apparmor.removing(Path("/"), ["/usr/bin/jq"]) == ""
