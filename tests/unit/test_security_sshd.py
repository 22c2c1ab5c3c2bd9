"""configs/security/sshd_config is valid for Debian's sshd (`sshd -t`) and its
effective settings (`sshd -T`) meet MixOS's policy: key-only, modern algorithms,
bounded login attempts. sshd runs in a private mount namespace with a throw-away
host key and privilege-separation user, and never listens."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from security_debian import library_path, unpacked
from security_policy import SSHD_CONFIG, parse_sshd_effective, sshd_violations


def sshd(config: Path, tmp: Path, mode: str) -> subprocess.CompletedProcess[str]:
    """Run `sshd MODE -f CONFIG` (MODE -t or -T) as it would run in MixOS: with
    /etc/ssh holding an ed25519 host key, /run/sshd and an sshd user."""
    if shutil.which("unshare") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs unshare (util-linux) and ssh-keygen (openssh-client)")
    trees = unpacked("openssh-server", "libwrap0")
    etc_ssh = tmp / "etc-ssh"
    etc_ssh.mkdir(exist_ok=True)
    key = etc_ssh / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True, timeout=30)
    passwd = tmp / "passwd"
    passwd.write_text(Path("/etc/passwd").read_text()
                      + "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n")
    binary = trees["openssh-server"] / "usr/sbin/sshd"
    script = " && ".join([
        f"mount --bind {shlex.quote(str(passwd))} /etc/passwd",
        "mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -m 0755 /run/sshd",
        "mkdir -p /etc/ssh", f"mount --bind {shlex.quote(str(etc_ssh))} /etc/ssh",
        f"exec {shlex.quote(str(binary))} {mode} -f {shlex.quote(str(config))}",
    ])
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "LD_LIBRARY_PATH": library_path(list(trees.values()))}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_sshd_accepts_the_config(tmp_path: Path) -> None:
    result = sshd(SSHD_CONFIG, tmp_path, "-t")
    assert result.returncode == 0, f"sshd -t rejected {SSHD_CONFIG}:\n{result.stderr}"
    assert result.stderr.strip() == "", f"sshd -t warned:\n{result.stderr}"


def test_effective_settings_meet_the_policy(tmp_path: Path) -> None:
    result = sshd(SSHD_CONFIG, tmp_path, "-T")
    assert result.returncode == 0, result.stderr
    effective = parse_sshd_effective(result.stdout)
    problems = sshd_violations(effective)
    assert not problems, "sshd -T of configs/security/sshd_config:\n  " + "\n  ".join(problems)
    assert effective["usepam"] == "no"
    assert effective["hostkey"] == "/etc/ssh/ssh_host_ed25519_key"


def test_a_config_allowing_passwords_and_cbc_is_caught(tmp_path: Path) -> None:
    weak = tmp_path / "sshd_config"
    text = SSHD_CONFIG.read_text()
    text = text.replace("PasswordAuthentication no", "PasswordAuthentication yes")
    text = text.replace("AuthenticationMethods publickey", "AuthenticationMethods any")
    text = text.replace("Ciphers chacha20-poly1305@openssh.com",
                        "Ciphers aes128-cbc,chacha20-poly1305@openssh.com")
    weak.write_text(text)
    result = sshd(weak, tmp_path, "-T")
    assert result.returncode == 0, result.stderr
    problems = sshd_violations(parse_sshd_effective(result.stdout))
    assert "passwordauthentication is 'yes', want 'no'" in problems
    assert "ciphers allows aes128-cbc" in problems
