"""MixOS's security policy as data, shared by the unit tests (config files) and the
VM tests (the running system): the sysctl values the issue requires, the SSH
server's required effective settings, and the setuid/setgid files allowed.
Each check returns the list of violations, so a test prints all of them at once."""

from __future__ import annotations

import configparser
import io
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SECURITY = PROJECT / "configs" / "security"
SYSCTL_DIR = SECURITY / "sysctl.d"
FIREWALL_RULES = SECURITY / "firewall" / "rules"
SSHD_CONFIG = SECURITY / "sshd_config"

# Required sysctl values (issue 5, "System"); docs/security.md explains each.
REQUIRED_SYSCTL = {
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.perf_event_paranoid": "3",
    "kernel.kexec_load_disabled": "1",
    "kernel.unprivileged_bpf_disabled": "1",
    "net.core.bpf_jit_harden": "2",
    "kernel.yama.ptrace_scope": "2",
    "fs.protected_symlinks": "1",
    "fs.protected_hardlinks": "1",
    "fs.protected_fifos": "2",
    "fs.protected_regular": "2",
    "fs.suid_dumpable": "0",
    "dev.tty.ldisc_autoload": "0",
    "vm.unprivileged_userfaultfd": "0",
    "kernel.randomize_va_space": "2",
    "kernel.sysrq": "0",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.secure_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv6.conf.all.accept_source_route": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.default.rp_filter": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv4.conf.all.log_martians": "1",
    # Hardening round two (issue 13): docs/security.md, "sysctl".
    "kernel.unprivileged_userns_clone": "0",
    "kernel.oops_limit": "100",
    "kernel.warn_limit": "100",
    "kernel.core_pattern": "|/bin/false",
    "kernel.core_uses_pid": "1",
    "vm.mmap_rnd_bits": "32",
    "vm.mmap_rnd_compat_bits": "16",
    "net.ipv6.conf.all.accept_ra": "0",
    "net.ipv6.conf.default.accept_ra": "0",
}

# A sysctl may be absent only when the kernel leaves its feature out: key -> the
# kernel option that creates it. The VM test checks that option is off in
# artifacts/kernel/config before it accepts a missing key.
SYSCTL_FEATURE = {
    "kernel.kexec_load_disabled": "CONFIG_KEXEC_CORE",
    "net.core.bpf_jit_harden": "CONFIG_BPF_JIT",
    "kernel.unprivileged_bpf_disabled": "CONFIG_BPF_SYSCALL",
    "kernel.perf_event_paranoid": "CONFIG_PERF_EVENTS",
    "kernel.yama.ptrace_scope": "CONFIG_SECURITY_YAMA",
    "vm.unprivileged_userfaultfd": "CONFIG_USERFAULTFD",
    "kernel.sysrq": "CONFIG_MAGIC_SYSRQ",
    "kernel.core_pattern": "CONFIG_COREDUMP",
    "kernel.core_uses_pid": "CONFIG_COREDUMP",
    "kernel.unprivileged_userns_clone": "CONFIG_USER_NS",
    # Only with 32-bit emulation (CONFIG_IA32_EMULATION), which MixOS leaves out.
    "vm.mmap_rnd_compat_bits": "CONFIG_HAVE_ARCH_MMAP_RND_COMPAT_BITS",
}

# The effective sshd settings (`sshd -T`, lower-case keys) MixOS requires.
SSHD_EXACT = {
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "permitemptypasswords": "no",
    "pubkeyauthentication": "yes",
    "authenticationmethods": "publickey",
    "permitrootlogin": "without-password",  # sshd -T's name for prohibit-password
    "hostbasedauthentication": "no",
    "x11forwarding": "no",
    "allowagentforwarding": "no",
    "allowtcpforwarding": "no",
    "permittunnel": "no",
    "permituserenvironment": "no",
    "strictmodes": "yes",
}
SSHD_ALLOWED_LISTS = {
    "kexalgorithms": {"sntrup761x25519-sha512@openssh.com", "curve25519-sha256",
                      "curve25519-sha256@libssh.org", "mlkem768x25519-sha256"},
    "ciphers": {"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                "aes128-gcm@openssh.com"},
    "macs": {"hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
             "umac-128-etm@openssh.com"},
    "hostkeyalgorithms": {"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"},
    "pubkeyacceptedalgorithms": {"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com",
                                 "sk-ssh-ed25519@openssh.com",
                                 "sk-ssh-ed25519-cert-v01@openssh.com",
                                 "rsa-sha2-512", "rsa-sha2-256"},
}
SSHD_MAXIMUM = {"logingracetime": 30, "maxauthtries": 3, "maxsessions": 10}

# setuid/setgid files MixOS ships: none (the recipe builder refuses them). Each
# entry added here must be justified in docs/security.md ("setuid and setgid").
ALLOWED_SETID: dict[str, str] = {}


def read_sysctl_files(directory: Path = SYSCTL_DIR) -> dict[str, str]:
    """key -> value over every *.conf in DIRECTORY, later files winning (as loaded)."""
    values: dict[str, str] = {}
    for conf in sorted(directory.glob("*.conf")):
        for n, raw in enumerate(conf.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if "=" not in line:
                raise ValueError(f"{conf}:{n}: not 'key = value': {raw!r}")
            key, value = (part.strip() for part in line.split("=", 1))
            values[key.lstrip("-")] = value
    return values


def sysctl_violations(values: dict[str, str]) -> list[str]:
    problems = []
    for key, want in REQUIRED_SYSCTL.items():
        got = values.get(key)
        if got is None:
            problems.append(f"{key} is not set (want {want})")
        elif got.split() != want.split():
            problems.append(f"{key} = {got} (want {want})")
    return problems


def parse_sshd_effective(text: str) -> dict[str, str]:
    """`sshd -T` output -> {keyword: value} (first occurrence; keys lower-case)."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key.lower() not in settings:
            settings[key.lower()] = value.strip()
    return settings


def sshd_violations(effective: dict[str, str]) -> list[str]:
    problems = []
    for key, want in SSHD_EXACT.items():
        if effective.get(key) != want:
            problems.append(f"{key} is {effective.get(key)!r}, want {want!r}")
    for key, allowed in SSHD_ALLOWED_LISTS.items():
        got = [a for a in effective.get(key, "").split(",") if a]
        if not got:
            problems.append(f"{key} is empty or missing")
        extra = [a for a in got if a not in allowed]
        if extra:
            problems.append(f"{key} allows {', '.join(extra)}")
    for key, limit in SSHD_MAXIMUM.items():
        try:
            value = int(effective.get(key, ""))
        except ValueError:
            problems.append(f"{key} is {effective.get(key)!r}, want a number <= {limit}")
            continue
        if value > limit or value <= 0:
            problems.append(f"{key} is {value}, want 1..{limit}")
    if not effective.get("maxstartups"):
        problems.append("maxstartups is not set")
    if "curve25519-sha256" not in effective.get("kexalgorithms", ""):
        problems.append("kexalgorithms lacks curve25519-sha256")
    return problems


def firewall_sections(text: str) -> dict[str, str]:
    """The rules file's '# @family ipv4' and '# @family ipv6' sections, as the loader
    (mixos-firewall) splits them."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("# @family "):
            current = sections.setdefault(line.removeprefix("# @family ").strip(), [])
            continue
        if current is not None:
            current.append(line)
    return {fam: "\n".join(lines) + "\n" for fam, lines in sections.items()}


def kernel_config(path: Path) -> dict[str, str]:
    """A kernel .config as {CONFIG_X: value}; options set to 'n' are left out."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("CONFIG_")]
    parser.read_file(io.StringIO("[k]\n" + "\n".join(lines)))
    return dict(parser["k"])
