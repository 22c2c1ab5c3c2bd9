"""The MixOS kernel boots under QEMU and has what the rest of MixOS relies on.

Boots artifacts/kernel/bzImage directly (-kernel/-initrd, TCG, -nodefaults) with a
BusyBox initramfs whose /init runs checks and prints one `CHECK <name> ok|FAIL` line
each, then powers off through ACPI. Attached: virtio disks holding squashfs (xz and
zstd), ext4 and vfat images, an ISO 9660 image (Joliet, with a squashfs inside for a loop
mount) on QEMU's default IDE CD-ROM, and a virtio NIC on QEMU's user network (DHCP).
When the host has Debian's iptables, its legacy and nft binaries load the firewall
rule types MixOS uses.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mixbuild.images import kernel
from mixbuild.images.cpio import Entry, newc_archive

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]

BUSYBOX = Path("/bin/busybox")
XTABLES = (Path("/usr/sbin/xtables-legacy-multi"), Path("/usr/sbin/xtables-nft-multi"))
XTABLES_PLUGINS = Path("/usr/lib/x86_64-linux-gnu/xtables")
BOOT_TIMEOUT = 180.0

CHECKS = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
check() { name=$1; shift; if "$@" >/tmp/out 2>&1; then echo "CHECK $name ok"; else echo "CHECK $name FAIL: $(tail -c 400 /tmp/out | tr '\n' ' ')"; fi; }
mkdir -p /mnt/xz /mnt/zstd /mnt/ext4 /mnt/vfat /mnt/iso /mnt/loop /ovl /merged /run /tmp
echo "userspace at $(cut -d' ' -f1 /proc/uptime) s"

check virtio-disks test -b /dev/vda -a -b /dev/vdb -a -b /dev/vdc -a -b /dev/vdd
check squashfs-xz sh -c 'mount -t squashfs -o ro /dev/vda /mnt/xz && grep -q mixos-xz /mnt/xz/hello'
check squashfs-zstd sh -c 'mount -t squashfs -o ro /dev/vdb /mnt/zstd && grep -q mixos-zstd /mnt/zstd/hello'
check ext4 sh -c 'mount -t ext4 /dev/vdc /mnt/ext4 && grep -q mixos-ext4 /mnt/ext4/hello && echo w > /mnt/ext4/new && sync'
check vfat sh -c 'mount -t vfat /dev/vdd /mnt/vfat && grep -q mixos-vfat /mnt/vfat/HELLO.TXT'
check overlay sh -c 'mount -t tmpfs -o mode=0755 tmpfs /ovl && mkdir /ovl/up /ovl/work && mount -t overlay overlay -o lowerdir=/mnt/xz,upperdir=/ovl/up,workdir=/ovl/work /merged && echo x > /merged/new && rm /merged/hello && test ! -e /merged/hello && test -e /mnt/xz/hello && mkdir /merged/d && rmdir /merged/d'
check cdrom-iso9660 sh -c 'mount -t iso9660 -o ro /dev/sr0 /mnt/iso && grep -q mixos-iso "/mnt/iso/a long Joliet name.txt"'
check loop-squashfs-on-iso sh -c 'mount -t squashfs -o loop,ro /mnt/iso/root.squashfs /mnt/loop && grep -q mixos-xz /mnt/loop/hello'
check virtio-net test -e /sys/class/net/eth0
check dhcp sh -c 'ip link set lo up && ip link set eth0 up && udhcpc -i eth0 -n -q -t 5 -T 2 -s /bin/true'
echo "active LSMs: $(cat /sys/kernel/security/lsm)"
check lsms sh -c 'l=",$(cat /sys/kernel/security/lsm),"; for m in landlock lockdown yama apparmor; do case $l in *,$m,*) ;; *) echo "no $m in $l"; exit 1;; esac; done; case $l in *,selinux,*) echo "selinux active: $l"; exit 1;; esac'
check lockdown grep -q '\[confidentiality\]' /sys/kernel/security/lockdown
check apparmor test -d /sys/kernel/security/apparmor
check sysctls sh -c 'for k in kernel/kptr_restrict kernel/dmesg_restrict kernel/perf_event_paranoid kernel/unprivileged_bpf_disabled kernel/yama/ptrace_scope kernel/randomize_va_space kernel/sysrq fs/suid_dumpable fs/protected_regular dev/tty/ldisc_autoload vm/mmap_min_addr net/ipv4/tcp_syncookies net/ipv4/conf/all/rp_filter net/ipv6/conf/all/accept_redirects; do test -f /proc/sys/$k || { echo missing $k; exit 1; }; done'
check no-kcore test ! -e /proc/kcore
check kfence sh -c 'dmesg | grep -q "kfence: initialized"'
check no-coredump-no-kallsyms sh -c 'test ! -e /proc/sys/kernel/core_pattern && test ! -e /proc/kallsyms && test ! -e /proc/sys/vm/unprivileged_userfaultfd'
check mmap-rnd-bits-default-32 sh -c 'test "$(cat /proc/sys/vm/mmap_rnd_bits)" = 32'
check machine-check test -d /sys/devices/system/machinecheck
check audit test -e /proc/self/loginuid
check namespaces sh -c 'for n in user pid net mnt uts ipc cgroup time; do test -e /proc/self/ns/$n || { echo missing $n; exit 1; }; done'
check cgroup2 sh -c 'mkdir -p /cg && mount -t cgroup2 none /cg && grep -q memory /cg/cgroup.controllers && grep -q pids /cg/cgroup.controllers'
if [ -x /sbin/xtables-legacy-multi ]; then
  for flavour in legacy nft; do
    for v in iptables ip6tables; do
      check $v-$flavour sh -c "set -e; t=$v-$flavour; \$t -P INPUT DROP; \$t -A INPUT -i lo -j ACCEPT;
        \$t -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT;
        \$t -A INPUT -m state --state INVALID -j DROP;
        \$t -A INPUT -p tcp --dport 22 --syn -m hashlimit --hashlimit-upto 6/min --hashlimit-burst 6 --hashlimit-mode srcip --hashlimit-name ssh -j ACCEPT;
        \$t -A INPUT -p tcp --dport 23 -m recent --name scan --set;
        \$t -A INPUT -p tcp --dport 80 -j REJECT;
        \$t -A INPUT -m limit --limit 5/min -j LOG --log-prefix drop;
        \$t -S INPUT; \$t -F INPUT; \$t -P INPUT ACCEPT"
    done
  done
fi
echo "CHECKS DONE"
poweroff -f
"""


def add_tree(entries: dict[str, Entry], path: str) -> None:
    """Directory entries for every parent of PATH (the cpio writer wants them listed)."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = "/".join(parts[:i])
        entries.setdefault(parent, Entry.directory(parent))


def add_host_file(entries: dict[str, Entry], src: Path) -> None:
    rel = str(src).lstrip("/")
    add_tree(entries, rel)
    entries[rel] = Entry.file(rel, src.read_bytes(), 0o755)


def shared_libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in re.findall(r"(/\S+\.so[.\d]*) \(", out)]


def make_initramfs(path: Path) -> bool:
    """Write the check initramfs; True when it carries iptables."""
    entries: dict[str, Entry] = {}
    for directory in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "mnt"):
        entries[directory] = Entry.directory(directory)
    entries["dev/console"] = Entry.chardev("dev/console", 5, 1)
    entries["bin/busybox"] = Entry.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    entries["init"] = Entry.file("init", CHECKS.encode(), 0o755)
    with_iptables = all(p.exists() for p in XTABLES) and XTABLES_PLUGINS.is_dir()
    if with_iptables:
        for binary in XTABLES:
            entries[f"sbin/{binary.name}"] = Entry.file(f"sbin/{binary.name}",
                                                        binary.read_bytes(), 0o755)
            for lib in shared_libraries(binary):
                add_host_file(entries, lib)
        for plugin in sorted(XTABLES_PLUGINS.glob("*.so")):
            add_host_file(entries, plugin)
        for flavour in ("legacy", "nft"):
            for tool in ("iptables", "ip6tables"):
                name = f"sbin/{tool}-{flavour}"
                entries[name] = Entry.symlink(name, f"xtables-{flavour}-multi")
    path.write_bytes(newc_archive(list(entries.values()), mtime=0))
    return with_iptables


def make_images(tmp: Path) -> dict[str, Path]:
    def content(name: str, text: str) -> Path:
        directory = tmp / name
        directory.mkdir()
        (directory / "hello").write_text(text + "\n")
        return directory

    images = {}
    for comp in ("xz", "zstd"):
        images[comp] = tmp / f"{comp}.squashfs"
        subprocess.run(["mksquashfs", content(comp, f"mixos-{comp}"), images[comp], "-comp", comp,
                        "-noappend", "-quiet"], check=True, stdout=subprocess.DEVNULL)
    images["ext4"] = tmp / "ext4.img"
    subprocess.run(["mkfs.ext4", "-q", "-d", content("ext4", "mixos-ext4"), images["ext4"], "8M"],
                   check=True)
    images["vfat"] = tmp / "vfat.img"
    subprocess.run(["mkfs.vfat", "-C", images["vfat"], "4096"], check=True,
                   stdout=subprocess.DEVNULL)
    hello = tmp / "HELLO.TXT"
    hello.write_text("mixos-vfat\n")
    subprocess.run(["mcopy", "-i", images["vfat"], hello, "::HELLO.TXT"], check=True)
    iso_root = tmp / "iso"
    iso_root.mkdir()
    (iso_root / "a long Joliet name.txt").write_text("mixos-iso\n")
    shutil.copyfile(images["xz"], iso_root / "root.squashfs")
    images["iso"] = tmp / "test.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-o", images["iso"], iso_root],
                   check=True)
    return images


def boot(bzimage: Path, initrd: Path, images: dict[str, Path]) -> tuple[str, int | None]:
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config",
           "-machine", "pc", "-m", "256", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-kernel", str(bzimage), "-initrd", str(initrd),
           "-append", "console=ttyS0 " + kernel.CMDLINE_FILE.read_text().strip(),
           "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0"]
    for name in ("xz", "zstd", "ext4", "vfat"):
        fmt = "raw"
        cmd += ["-drive", f"file={images[name]},format={fmt},if=virtio,snapshot=on"]
    cmd += ["-drive", f"file={images['iso']},format=raw,if=ide,media=cdrom"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = b""
    start = time.monotonic()
    while time.monotonic() - start < BOOT_TIMEOUT:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    return output.decode(errors="replace"), code


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int | None, bool]:
    bzimage = kernel.ARTIFACTS / "bzImage"
    if not bzimage.exists():
        pytest.skip(f"{bzimage} not built; run 'make kernel'")
    for tool in ("qemu-system-x86_64", "mksquashfs", "mkfs.ext4", "mkfs.vfat", "mcopy", "xorriso"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing; run 'make deps'")
    tmp = tmp_path_factory.mktemp("kernel-boot")
    initrd = tmp / "checks.cpio"
    with_iptables = make_initramfs(initrd)
    text, code = boot(bzimage, initrd, make_images(tmp))
    return text, code, with_iptables


def tail(text: str) -> str:
    return "\n".join(text.splitlines()[-50:])


def test_kernel_reaches_userspace_and_runs_every_check(console: tuple[str, int | None, bool]):
    text, _, with_iptables = console
    assert "CHECKS DONE" in text, f"the checks did not finish; console:\n{tail(text)}"
    failed = [line for line in text.splitlines() if line.startswith("CHECK ") and " ok" not in line]
    assert not failed, "failed in the guest:\n" + "\n".join(failed)
    # one per `check` line at the start of a line, plus {legacy,nft} x {iptables,ip6tables}
    expected = sum(line.startswith("check ") for line in CHECKS.splitlines())
    expected += 4 if with_iptables else 0
    passed = [line for line in text.splitlines() if re.match(r"CHECK \S+ ok", line)]
    assert len(passed) == expected, f"expected {expected} checks, saw:\n" + "\n".join(passed)


def test_kernel_powers_off_through_acpi(console: tuple[str, int | None, bool]) -> None:
    text, code, _ = console
    assert "reboot: Power down" in text, f"no ACPI power-down; console:\n{tail(text)}"
    assert code == 0, f"QEMU exit status {code} after poweroff"
