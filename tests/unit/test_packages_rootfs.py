"""The built root filesystem (artifacts/rootfs from `make rootfs`), checked in a
chroot: mix runs on the image's own Python, sshd accepts its configuration,
BusyBox applets and iptables work, accounts are locked down, and every ELF
file's libraries are in the image. Skipped until the rootfs exists."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from mixbuild.common import ARTIFACTS, PACKAGES_DIR
from mixbuild.packages.elf import scan_tree

ROOT = ARTIFACTS / "rootfs"
MEDIUM_REPO = ARTIFACTS / "medium-repo"
pytestmark = pytest.mark.skipif(
    not (ROOT / "var/lib/mix").is_dir() or os.geteuid() != 0,
    reason="needs artifacts/rootfs ('make rootfs') and root for chroot")


def chroot(script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run SCRIPT with the image's /bin/sh in a chroot of an overlay over the rootfs
    (writes go to a tmpfs, artifacts/rootfs stays untouched), inside a private mount
    namespace with /dev, /proc, a tmpfs /run and /tmp, and the boot medium's
    repository at /run/mixos/medium/repo. Everything is gone when it exits."""
    r = shlex.quote(str(ROOT))
    medium = shlex.quote(str(MEDIUM_REPO))
    setup = f"""
set -e
mount --make-rprivate /
t=$(mktemp -d)
mount -t tmpfs tmpfs $t
mkdir $t/upper $t/work $t/root
mount -t overlay overlay -o lowerdir={r},upperdir=$t/upper,workdir=$t/work $t/root
mount --bind /dev $t/root/dev
mount -t proc proc $t/root/proc
mount -t tmpfs tmpfs $t/root/run
mount -t tmpfs tmpfs $t/root/tmp
if [ -d {medium} ]; then
    mkdir -p $t/root/run/mixos/medium/repo
    mount --bind {medium} $t/root/run/mixos/medium/repo
fi
exec chroot $t/root /bin/sh -c {shlex.quote(script)}
"""
    return subprocess.run(["unshare", "--mount", "sh", "-c", setup], check=False,
                          capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def ok(script: str) -> str:
    proc = chroot(script)
    assert proc.returncode == 0, f"{script!r} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def test_mix_runs_on_the_images_python_and_lists_mixos_base() -> None:
    out = ok("mix list")
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"mixos-base", "base-files", "busybox", "glibc", "python3", "mix",
            "openssh-server", "iptables", "mixos-init", "mixos-hardening"} <= names


def test_mix_verify_is_clean() -> None:
    ok("mix verify")


@pytest.mark.skipif(not (MEDIUM_REPO / "index.json").exists(), reason="no medium repository")
def test_nginx_and_ssh_client_install_from_the_medium_repository() -> None:
    out = ok("mix update && mix -y install nginx openssh && mkdir -p /run/nginx && "
             "nginx -t 2>&1 && ssh -V 2>&1 && mix verify")
    assert "syntax is ok" in out and "OpenSSH_9.2" in out


def test_sshd_accepts_its_configuration() -> None:
    ok("mkdir -p /run/sshd && ssh-keygen -q -t ed25519 -N '' -f /tmp/hostkey && "
       "/usr/sbin/sshd -t -h /tmp/hostkey")


def test_busybox_applets_work() -> None:
    out = ok("echo hi | sed s/hi/ok/; ls /etc/hostname; ip -V 2>&1 | head -1; "
             "mount | grep -c proc; cat /etc/hostname")
    assert out.splitlines()[0] == "ok" and out.splitlines()[-1] == "mixos"
    for applet in ("sh", "init", "getty", "login", "udhcpc", "syslogd", "klogd", "ip", "mount"):
        link = next(p for p in (ROOT / "usr/bin" / applet, ROOT / "usr/sbin" / applet)
                    if p.is_symlink())
        assert os.readlink(link) == "/usr/bin/busybox"


def test_applet_list_matches_the_packaged_busybox() -> None:
    listed = {line.strip() for line in (PACKAGES_DIR / "busybox/applets.txt").read_text()
              .splitlines() if line.strip() and not line.startswith("#")}
    out = ok("busybox --list-full")
    actual = {"/" + p.replace("sbin/", "usr/sbin/", 1) if p.startswith("sbin/") else
              "/" + p.replace("bin/", "usr/bin/", 1) if p.startswith("bin/") else "/" + p
              for p in out.split()}
    # The build has exactly the listed applets (no linuxrc); busybox lists itself.
    assert listed == actual - {"/usr/bin/busybox"}


def test_iptables_uses_the_legacy_backend() -> None:
    assert "(legacy)" in ok("iptables -V")
    assert "(legacy)" in ok("ip6tables -V")


def test_python_is_trimmed_and_runs() -> None:
    out = ok("python3 -c 'import sys, ssl, sqlite3, json; print(sys.version_info[:2])'")
    assert out.strip() == "(3, 11)"
    stdlib = ROOT / "usr/lib/python3.11"
    assert not (stdlib / "test").exists() and not (stdlib / "tkinter").exists()
    assert not list(stdlib.rglob("*.py"))  # sourceless bytecode only


SSH_LOGIN = """
set -e
mount --make-rprivate /
t=$(mktemp -d)
mount -t tmpfs tmpfs $t
mkdir $t/upper $t/work $t/root
mount -t overlay overlay -o lowerdir={root},upperdir=$t/upper,workdir=$t/work $t/root
mount --bind /dev $t/root/dev
mount -t proc proc $t/root/proc
mount -t tmpfs tmpfs $t/root/run
mkdir -p $t/root/run/sshd $t/root/root/.ssh
cp {pub} $t/root/root/.ssh/authorized_keys
chmod 600 $t/root/root/.ssh/authorized_keys
chroot $t/root ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
chroot $t/root /usr/sbin/sshd -D -p {port} -o ListenAddress=127.0.0.1 &
sshd=$!
trap 'kill $sshd 2>/dev/null; wait $sshd 2>/dev/null' EXIT
for i in 1 2 3 4 5 6 7 8 9 10; do
    ssh-keyscan -p {port} 127.0.0.1 >/dev/null 2>&1 && break
    sleep 0.3
done
timeout 20 ssh -F /dev/null -i {key} -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no \\
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 'id -u' && echo KEY-LOGIN-OK
"""


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")
def test_root_logs_in_over_ssh_with_a_key(tmp_path: Path) -> None:
    """sshd of the image, in a chroot on 127.0.0.1, accepts root's key (a root
    locked with '!' would be refused: sshd without PAM treats it as locked)."""
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    script = SSH_LOGIN.format(root=shlex.quote(str(ROOT)), pub=shlex.quote(f"{key}.pub"),
                              key=shlex.quote(str(key)), port=20000 + os.getpid() % 20000)
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, timeout=90, stdin=subprocess.DEVNULL, check=False)
    assert "KEY-LOGIN-OK" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.split()[0] == "0"


def test_tls_clients_find_the_ca_bundle() -> None:
    out = ok("python3 -c 'import ssl; print(ssl.create_default_context()"
             ".cert_store_stats()[\"x509_ca\"])'")
    assert int(out) > 100


def test_accounts_root_locked_no_empty_passwords_shadow_private() -> None:
    shadow = ROOT / "etc/shadow"
    assert stat.S_IMODE(shadow.stat().st_mode) & 0o077 == 0
    entries = [line.split(":") for line in shadow.read_text().splitlines()]
    assert entries and all(e[1] != "" for e in entries)
    root = next(e for e in entries if e[0] == "root")
    # "*": no password matches it; "!" would also lock out sshd key logins (no PAM)
    assert root[1] == "*"
    assert stat.S_IMODE((ROOT / "root").stat().st_mode) == 0o700


def test_repository_key_and_url_are_configured() -> None:
    assert (ROOT / "etc/mix/keys/mixos-repo.pub").is_file()
    urls = [line for line in (ROOT / "etc/mix/repositories").read_text().splitlines()
            if line and not line.startswith("#")]
    assert len(urls) == 1 and "://" in urls[0]


def test_every_elf_dependency_is_in_the_image() -> None:
    linkage = scan_tree(ROOT)
    libdirs = [ROOT / "usr/lib/x86_64-linux-gnu", ROOT / "usr/lib", ROOT / "usr/lib64"]
    missing = []
    for f in linkage.files:
        here = (ROOT / f.path.lstrip("/")).parent
        for so in f.needed:
            # bundled wheel libraries are found through an $ORIGIN rpath
            candidates = [d / so for d in libdirs] + [here / so, here.parent / "solv.libs" / so]
            if not any(c.exists() for c in candidates):
                missing.append(f"{f.path}: {so}")
    assert not missing, "\n".join(missing)


def test_no_setuid_files() -> None:
    found = [str(p) for p in ROOT.rglob("*")
             if not p.is_symlink() and p.is_file() and p.stat().st_mode & 0o6000]
    assert not found


def _resolve_inside(path: str, depth: int = 0) -> str | None:
    """PATH (absolute, inside ROOT) with symlinks followed as the image sees them."""
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        nxt = os.path.join(cur, part)
        if (ROOT / nxt.lstrip("/")).is_symlink():
            if depth > 40:
                return None
            target = os.readlink(ROOT / nxt.lstrip("/"))
            base = target if target.startswith("/") else os.path.normpath(os.path.join(cur, target))
            rest = "/".join(parts[i + 1:])
            return _resolve_inside(f"{base}/{rest}" if rest else base, depth + 1)
        cur = nxt
    return cur


def test_no_dangling_symlinks() -> None:
    runtime = ("/proc", "/run", "/dev", "/sys", "/tmp")  # filled at boot
    dangling = []
    for link in (p for p in ROOT.rglob("*") if p.is_symlink()):
        inside = "/" + link.relative_to(ROOT).as_posix()
        target = _resolve_inside(inside)
        if target is None or not (ROOT / target.lstrip("/")).exists() and \
                not target.startswith(runtime):
            dangling.append(f"{inside} -> {os.readlink(link)}")
    assert not dangling, "\n".join(dangling)
