"""The package collection (docs/packages.md) in one booted live system: every compact
recipe is installed from the build's repository served by the host, each program does
one real thing (curl and wget fetch, git commits, tcpdump captures on lo, dig asks a DNS
server on the host, the daemons run as supervised services...), then everything is removed and `mix verify` is clean with the
base system as it was.

The daemons (haproxy, redis, postgresql, chrony; nginx installed on its own) run as
services under their own users, confined by their AppArmor profiles, their ports
closed to the host (QEMU hostfwd) until `mixos-firewall allow`
(test_daemons_confined_and_closed_until_allowed).

The storage and tunnel tools use the kernel for real: cryptsetup opens a LUKS2
volume through dm-crypt, lvm2 makes a logical volume, both carry a mounted file
system; mkfs.xfs's file system is mounted; two WireGuard interfaces (one in its own
network namespace) carry a ping after their handshake."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Guest, Images, KeyPair, _boot

from mixbuild.common import ARTIFACTS, PACKAGES_DIR
from mixbuild.containerimage import package_entries, write_docker_archive
from mixbuild.packages.recipe import FULL_BIN, load_recipes
from mixbuild.vm.qemu import free_port

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

MEMORY_MB = 1024
DNS_NAME = "collection.mixos.test"
DNS_ADDRESS = "192.0.2.44"
# podman's image: the repository's busybox package as a docker-archive (container_www).
IMAGE = "localhost/busybox:mixos"
CONTAINER_HELLO = "hello from the host"
# Rootless podman as the user alice (uid 1000, made and removed by the actions): on the
# live system the root is an overlay, where overlay storage cannot live, hence vfs.
ROOTLESS = "chpst -u alice env HOME=/home/alice USER=alice podman --storage-driver vfs"
# The guest port a container publishes in test_published_port_is_closed_until_allowed,
# reached from the host through a QEMU host forward (as another machine would); not
# 8080, where haproxy still listens then.
PUBLISHED = 8088


# Compact recipes that are data or libraries for the others (installed with them).
SUPPORT = ("ncurses-base", "bind9-libs", "locale-c-utf8")


def collection() -> list[str]:
    """Every compact recipe: the whole collection, libraries included."""
    return sorted(n for n, r in load_recipes(PACKAGES_DIR).items() if r.compact)


def programs() -> list[str]:
    return [n for n in collection() if not n.startswith("lib") and n not in SUPPORT]


def dns_answer(query: bytes) -> bytes:
    """A reply to a one-question DNS query: DNS_ADDRESS for DNS_NAME's A record,
    NXDOMAIN for anything else."""
    ident, _flags, qdcount = struct.unpack(">HHH", query[:6])
    end = 12
    labels = []
    while query[end]:
        labels.append(query[end + 1:end + 1 + query[end]].decode())
        end += query[end] + 1
    question = query[12:end + 5]
    qtype = struct.unpack(">H", query[end + 1:end + 3])[0]
    if ".".join(labels).lower() == DNS_NAME and qtype == 1 and qdcount == 1:
        answer = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4)
                  + socket.inet_aton(DNS_ADDRESS))
        return struct.pack(">HHHHHH", ident, 0x8580, 1, 1, 0, 0) + question + answer
    return struct.pack(">HHHHHH", ident, 0x8583, 1, 0, 0, 0) + question


@pytest.fixture(scope="module")
def dns_server() -> Iterator[int]:
    """A UDP DNS server on 127.0.0.1 answering DNS_NAME; the guest asks 10.0.2.2."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            sock.sendto(dns_answer(data), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


# Guest ports of the daemons, each forwarded from a host port on 127.0.0.1.
DAEMON_PORTS = (8080, 6379, 5432)


@pytest.fixture(scope="module")
def forwarded() -> dict[int, int]:
    """Guest port -> the host port that QEMU forwards to it (the daemons' and a
    container's published port)."""
    return {port: free_port() for port in (*DAEMON_PORTS, PUBLISHED)}


@pytest.fixture(scope="module")
def container_www(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Served to the guest over HTTP: busybox.tar, a docker-archive of the repository's
    busybox package (podman load), and hello.txt for containers to fetch from the host."""
    from release import serve

    www = tmp_path_factory.mktemp("containers")
    index = json.loads((ARTIFACTS / "repo" / "index.json").read_bytes())
    busybox = next(p["filename"] for p in index["packages"] if p["name"] == "busybox")
    write_docker_archive(www / "busybox.tar",
                         package_entries(ARTIFACTS / "repo" / busybox), IMAGE)
    (www / "hello.txt").write_text(CONTAINER_HELLO + "\n")
    with serve(www) as url:
        yield url


@pytest.fixture(scope="module")
def installed(mixos_images: Images, vm_accel: str, vm_workdir: Path, ssh_keypair: KeyPair,
              nocloud_seed: Path, http_repo: str, boot_metrics: dict[str, object],
              forwarded: dict[int, int]) -> Iterator[tuple[Guest, dict[str, str]]]:
    """One guest (shared by the module) with the whole collection installed, and what
    the base looked like before."""
    g = _boot(mixos_images, vm_accel, vm_workdir, ssh_keypair, nocloud_seed, boot="direct",
              memory_mb=MEMORY_MB, name="packages",
              forwards=tuple((host, guest) for guest, host in forwarded.items()))
    try:
        before = {"packages": g.sh("mix list --installed"),
                  "etc": g.sh("sha256sum /etc/passwd /etc/group /etc/shadow")}
        start = time.monotonic()
        g.sh(f"mix --repo {http_repo} -y install {' '.join(collection())}", timeout=900)
        boot_metrics["collection_install_s"] = round(time.monotonic() - start, 1)
        yield g, before
    finally:
        g.stop()


# python3-full: every stdlib module imports, except those not built on Linux (Windows,
# macOS) and Tk's, left out of the package (packages/python3-full/recipe.toml); the
# trimmed runtime's modules still load from python3's sourceless .pyc.
PY_STDLIB = """
import importlib, json, sys
NOT_HERE = {"_msi", "msilib", "msvcrt", "nt", "_overlapped", "_winapi", "winreg", "winsound",
            "_scproxy", "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib"}
failed = []
for name in sorted(sys.stdlib_module_names - NOT_HERE):
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {e!r}")
print("\\n".join(failed) or f"imported all {len(sys.stdlib_module_names - NOT_HERE)} modules")
print("trimmed runtime first:", json.__file__)
"""
# sqlite3, decimal, dbm, ssl (against openssl's s_server) and curses (on a pty) at work.
PY_WORK = """
import dbm.gnu, dbm.ndbm, decimal, os, pty, sqlite3, ssl, urllib.request
con = sqlite3.connect(":memory:")
con.execute("create table t(x)")
con.executemany("insert into t values (?)", [(20,), (22,)])
print("sqlite3", con.execute("select sum(x) from t").fetchone()[0], len(list(con.iterdump())))
decimal.getcontext().prec = 40
print("decimal", decimal.Decimal(1) / decimal.Decimal(7))
for kind in (dbm.gnu, dbm.ndbm):
    with kind.open(f"/tmp/{kind.__name__}", "c") as db:
        db[b"k"] = kind.__name__.encode()
    with kind.open(f"/tmp/{kind.__name__}", "r") as db:
        print("read back", db[b"k"].decode())
ctx = ssl.create_default_context(cafile="/tmp/c.pem")
with urllib.request.urlopen("https://localhost:4433/tls.txt", context=ctx) as r:
    print("ssl", r.read().decode().strip())
pid, fd = pty.fork()
if pid == 0:
    import curses
    os.environ["TERM"] = "xterm"
    curses.wrapper(lambda s: (s.addstr(3, 5, "drawn by curses", curses.A_BOLD), s.refresh()))
    os._exit(0)
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
print("curses", "drawn by curses" in out.decode(errors="replace"), b"\\x1b[4;6H" in out)
"""
# Seconds an action may take, where 180 is not enough: python3 -m venv took 50-127 s
# under TCG on a busy 2-core host (ensurepip byte-compiles pip and setuptools).
ACTION_TIMEOUT = {"python3-full": 420}
# A wheel made by hand, installed with the venv's own pip (from ensurepip, offline); the
# venv lives in the home directory, since /tmp is noexec (docs/security.md).
PY_WHEEL = """
import base64, hashlib, zipfile
files = {"hello.py": "def greet():\\n    return 'hello from a venv'\\n",
         "hello-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: hello\\nVersion: 1.0\\n",
         "hello-1.0.dist-info/WHEEL": ("Wheel-Version: 1.0\\nGenerator: mixos-test\\n"
                                       "Root-Is-Purelib: true\\nTag: py3-none-any\\n")}
record = ""
for name, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
    record += f"{name},sha256={digest.decode()},{len(text.encode())}\\n"
files["hello-1.0.dist-info/RECORD"] = record + "hello-1.0.dist-info/RECORD,,\\n"
with zipfile.ZipFile("/tmp/hello-1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"""


# One real action per package: (package, shell command, text its output must hold).
# Commands run in a login shell (the full programs' PATH from /etc/profile.d).
ACTIONS: list[tuple[str, str, str]] = [
    ("bash", "bash -c 'declare -A a=([k]=bash-assoc); echo ${a[k]} $BASH_VERSION'", "bash-assoc 5."),
    ("less", "alias less && printf 'one\\ntwo\\n' > /tmp/l.txt && less /tmp/l.txt",
     f"{FULL_BIN}/less'\none\ntwo"),
    ("tmux", ("tmux new-session -d -s t -x 120 -y 40 'nano /tmp/nano.txt' && sleep 2 && "
             "tmux send-keys -t t 'written by nano' C-o Enter && sleep 1 && "
             "tmux send-keys -t t C-x && sleep 1 && cat /tmp/nano.txt"), "written by nano"),
    ("nano", "cat /tmp/nano.txt", "written by nano"),
    ("htop", ("tmux new-session -d -s h -x 160 -y 40 htop && sleep 3 && "
             "tmux capture-pane -p -t h && tmux kill-session -t h"), "PID USER"),
    ("vim", "vim -es -c 'normal! ivim wrote this' -c wq /tmp/vim.txt; cat /tmp/vim.txt",
     "vim wrote this"),
    ("openssl", ("cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost "
                "-keyout k.pem -out c.pem -days 1 2>/dev/null && echo served-over-tls > tls.txt && "
                "(openssl s_server -accept 4433 -cert c.pem -key k.pem -WWW -quiet "
                "</dev/null >/dev/null 2>&1 &) && sleep 2 && openssl x509 -noout -subject -in c.pem"),
     "CN = localhost"),
    ("wget", ("alias wget && wget -q -O - --ca-certificate=/tmp/c.pem "
             "https://localhost:4433/tls.txt"), f"{FULL_BIN}/wget'\nserved-over-tls"),
    ("curl", ("curl -sS --cacert /tmp/c.pem https://localhost:4433/tls.txt && "
             "curl -sS {repo}/index.json | sha256sum"), "served-over-tls\n{index_sha}"),
    ("rsync", ("rsync -aL /usr/share/zoneinfo/Europe/ /tmp/zi/ && "
              "diff -r /usr/share/zoneinfo/Europe /tmp/zi && echo rsync-same"),
     "rsync-same"),
    ("git", ("cd /tmp && git init -q repo && cd repo && echo hi > f && git add f && "
            "git -c user.name=t -c user.email=t@example.org commit -q -m first && "
            "git log --format=%s"), "first"),
    ("jq", "echo '{\"a\":[1,2,3]}' | jq '.a | add'", "6"),
    ("lsof", "lsof -nP -iTCP:22 -sTCP:LISTEN", "(LISTEN)"),
    ("strace", "strace -e trace=openat cat /etc/hostname 2>&1", "/etc/hostname"),
    ("tcpdump", ("(tcpdump -i lo -c 4 -w /tmp/cap.pcap icmp 2>/dev/null &) && sleep 2 && "
                "ping -c 2 127.0.0.1 >/dev/null && sleep 1 && tcpdump -n -r /tmp/cap.pcap 2>/dev/null"),
     "ICMP echo request"),
    ("iproute2", "alias ip && ip -j -br addr show lo && ss -ltn", f"{FULL_BIN}/ip'\n[{{\"ifname\":\"lo\""),
    ("ethtool", "ethtool -i $(ls /sys/class/net | grep -v lo | head -1)", "driver: virtio_net"),
    ("dnsutils", "dig +short +tries=1 +time=5 -p {dns_port} @10.0.2.2 " + DNS_NAME,
     DNS_ADDRESS),
    ("nftables", ("nft add table inet collection && nft add chain inet collection c && "
                 "nft list ruleset && nft delete table inet collection"), "table inet collection"),
    ("wireguard-tools", (
        "ip netns add wgpeer && ip link add wg0 type wireguard && "
        "ip link add wg1 type wireguard && ip link set wg1 netns wgpeer && "
        "wg genkey > /tmp/wg0.key && wg genkey > /tmp/wg1.key && "
        "wg set wg0 listen-port 51820 private-key /tmp/wg0.key peer $(wg pubkey < /tmp/wg1.key) "
        "endpoint 127.0.0.1:51821 allowed-ips 10.9.0.2/32 && "
        "ip netns exec wgpeer wg set wg1 listen-port 51821 private-key /tmp/wg1.key "
        "peer $(wg pubkey < /tmp/wg0.key) endpoint 127.0.0.1:51820 allowed-ips 10.9.0.1/32 && "
        "ip addr add 10.9.0.1/24 dev wg0 && ip link set wg0 up && "
        "ip netns exec wgpeer ip addr add 10.9.0.2/24 dev wg1 && "
        "ip netns exec wgpeer ip link set wg1 up && ip netns exec wgpeer ip link set lo up && "
        "ping -c 2 -W 5 10.9.0.2 | grep -o '2 packets received'; "
        "wg show wg0 transfer | awk '$2 > 0 { print \"sent over the tunnel\" }'; "
        "ip link del wg0; ip netns del wgpeer"),
     "2 packets received\nsent over the tunnel"),
    ("iperf3", "iperf3 -s -1 -D && sleep 1 && iperf3 -c 127.0.0.1 -t 1 -f m | tail -3",
     "receiver"),
    ("xfsprogs", ("truncate -s 320M /tmp/xfs.img && mkfs.xfs -q /tmp/xfs.img && "
                 "mkdir -p /mnt/xfs && mount -o loop /tmp/xfs.img /mnt/xfs && "
                 "echo on-xfs > /mnt/xfs/f && sync && findmnt -n -o FSTYPE /mnt/xfs && "
                 "cat /mnt/xfs/f; umount /mnt/xfs; xfs_db -r -c 'sb 0' -c 'p magicnum' /tmp/xfs.img"),
     "xfs\non-xfs\nmagicnum = 0x58465342"),
    ("util-linux", ("lsblk -J -o NAME,TYPE && findmnt -n -o FSTYPE / && alias fdisk && "
                   "lscpu | grep -c Architecture"), f"{FULL_BIN}/fdisk'\n1"),
    ("parted", ("truncate -s 16M /tmp/p.img && parted -s /tmp/p.img mklabel gpt "
               "mkpart data 1MiB 8MiB print"), "data"),
    ("cryptsetup", ("truncate -s 20M /tmp/luks.img && printf secret > /tmp/luks.key && "
                   "cryptsetup -q luksFormat --type luks2 --pbkdf pbkdf2 "
                   "--pbkdf-force-iterations 1000 /tmp/luks.img /tmp/luks.key && "
                   "cryptsetup open --key-file /tmp/luks.key /tmp/luks.img collection && "
                   "mkfs.ext4 -q /dev/mapper/collection && mkdir -p /mnt/luks && "
                   "mount /dev/mapper/collection /mnt/luks && echo sealed > /mnt/luks/f && "
                   "umount /mnt/luks && cryptsetup status collection | grep -o 'aes-xts-plain64'; "
                   "cryptsetup close collection; grep -c sealed /tmp/luks.img; "
                   "cryptsetup luksDump /tmp/luks.img"),
     "aes-xts-plain64\n0\n"),
    ("lvm2", ("truncate -s 32M /tmp/lvm.img && losetup -f /tmp/lvm.img && "
             "dev=$(losetup -a | grep /tmp/lvm.img | cut -d: -f1) && "
             "lvm pvcreate -q $dev && lvm vgcreate -q collectionvg $dev && "
             "lvm lvcreate -q -n data -L 16M collectionvg && mkfs.ext4 -q /dev/collectionvg/data && "
             "mkdir -p /mnt/lv && mount /dev/collectionvg/data /mnt/lv && echo on-lvm > /mnt/lv/f && "
             "cat /mnt/lv/f && umount /mnt/lv && lvm lvs --noheadings --separator : -o lv_name,vg_name collectionvg; "
             "lvm vgremove -q -f collectionvg >/dev/null; lvm pvremove -q $dev >/dev/null; "
             "losetup -d $dev"), "on-lvm\n  data:collectionvg"),
    ("tzdata", "TZ=Asia/Tokyo date +%Z", "JST"),
    ("gnupg", ("export GNUPGHOME=/tmp/gpg && mkdir -m 700 $GNUPGHOME && "
              "gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-gen-key "
              "'Collection <c@example.org>' ed25519 sign 1d 2>/dev/null && "
              "echo signed > /tmp/s.txt && gpg -q --batch --pinentry-mode loopback --passphrase '' "
              "--sign /tmp/s.txt && gpg --verify /tmp/s.txt.gpg 2>&1; gpgconf --kill all"),
     "Good signature"),
    ("sqlite3", ("sqlite3 /tmp/t.db 'create table t(x); insert into t values (20),(22); "
                "select sum(x) from t;'"), "42"),
    # Containers (docs/packages.md, "Containers"): podman as root with netavark's bridge,
    # NAT, a published port and container DNS; then rootless as alice over slirp4netns
    # with the user-namespace switch on; the last action undoes every change.
    ("containers-common", ("mkdir -p /var/lib/containers && "
                           "mount -t tmpfs -o size=256m containers /var/lib/containers && "
                           "cp -a /etc/mixos/firewall /tmp/firewall.before && "
                           "wget -q -O /tmp/busybox.tar {www}/busybox.tar && "
                           "podman load -q -i /tmp/busybox.tar && podman info --format "
                           "'{{.Store.GraphDriverName}} {{.Host.CgroupManager}} "
                           "{{.Host.NetworkBackend}} {{.Host.OCIRuntime.Name}}'"),
     f"Loaded image: {IMAGE}\noverlay cgroupfs netavark crun"),
    ("podman", (f"podman run -d --name web -p 8080:80 {IMAGE} sh -c 'mkdir /www && "
                "echo served-by-container > /www/index.html && exec httpd -f -p 80 -h /www' "
                ">/dev/null && sleep 2 && wget -q -O - http://127.0.0.1:8080/ && "
                f"podman run --rm {IMAGE} wget -q -O - {{www}}/hello.txt"),
     f"served-by-container\n{CONTAINER_HELLO}"),
    ("conmon", "ps -o args | grep '^/usr/bin/conmon' | grep -o -- '-n web'", "-n web"),
    ("crun", "crun --root /run/crun state $(podman inspect -f '{{.Id}}' web) | grep status",
     '"status": "running"'),
    ("netavark", "iptables -t nat -S NETAVARK-HOSTPORT-DNAT", "-p tcp -m tcp --dport 8080"),
    ("catatonit", (f"podman run --rm --init {IMAGE} sh -c "
                   "'cat /proc/1/comm; /run/podman-init --version'"),
     "podman-init\ntini version 0.1.7_catatonit"),
    ("aardvark-dns", ("mixos-firewall allow 53/udp from 10.89.0.0/24 >/dev/null && "
                      "podman network create --subnet 10.89.0.0/24 mixnet >/dev/null && "
                      f"podman run -d --name named --network mixnet {IMAGE} sleep 600 "
                      f">/dev/null && podman run --rm --network mixnet {IMAGE} nslookup named; "
                      "mixos-firewall deny 53/udp >/dev/null"),
     "Name:\tnamed.dns.podman\nAddress: 10.89.0.2"),
    ("uidmap", ("echo 'alice:x:1000:1000:alice:/home/alice:/bin/sh' >> /etc/passwd && "
                "echo 'alice:x:1000:' >> /etc/group && echo 'alice:!:0::::::' >> /etc/shadow && "
                "mkdir -m 700 /home/alice && chown alice:alice /home/alice && "
                "mixos-subids alice && getsubids alice && getsubids -g alice"),
     ("alice: ids 100000..165535 (/etc/subuid, /etc/subgid)\n0: alice 100000 65536\n"
      "0: alice 100000 65536")),
    ("slirp4netns", ("cp /tmp/busybox.tar /home/alice/ && chown alice /home/alice/busybox.tar && "
                     "cd /home/alice && "
                     f"({ROOTLESS} unshare true >/dev/null 2>&1 || echo switch-off-refused); "
                     "echo 'kernel.unprivileged_userns_clone = 1' "
                     "> /etc/sysctl.d/60-mixos-userns.conf && mixos-sysctl >/dev/null && "
                     f"{ROOTLESS} load -q -i busybox.tar >/dev/null && {ROOTLESS} run --rm "
                     f"--network slirp4netns:cidr=10.0.3.0/24 {IMAGE} sh -c "
                     "'awk \"{print \\$1, \\$2, \\$3}\" /proc/self/uid_map; "
                     "wget -q -O - {www}/hello.txt'; "
                     f"{ROOTLESS} system reset -f >/dev/null 2>&1; chpst -u alice kill -9 -1; "
                     "rm /etc/sysctl.d/60-mixos-userns.conf; mixos-sysctl >/dev/null; "
                     "sysctl kernel.unprivileged_userns_clone; mixos-subids -r alice; "
                     "for f in passwd group shadow; do grep -v '^alice:' /etc/$f > /tmp/$f.new; "
                     "cat /tmp/$f.new > /etc/$f; done; rm -rf /home/alice"),
     (f"switch-off-refused\n0 1000 1\n1 100000 65536\n{CONTAINER_HELLO}\n"
      "kernel.unprivileged_userns_clone = 0")),
    ("podman", ("podman rm -f -t 0 web named >/dev/null && podman network rm mixnet >/dev/null "
                "&& podman ps -a -q | wc -l && podman system reset -f >/dev/null 2>&1; "
                "umount /var/lib/containers && rmdir /var/lib/containers; "
                "rm -f /etc/containers/networks/netavark.lock; rmdir /etc/containers/networks; "
                "for f in allowed allowed.rules; do [ -e /tmp/firewall.before/$f ] || "
                "rm -f /etc/mixos/firewall/$f; done; "
                "diff -r /tmp/firewall.before /etc/mixos/firewall && echo firewall-as-before; "
                "ls /etc/subuid /etc/subgid 2>&1 | grep -c 'No such file'"),
     "0\nfirewall-as-before\n2"),
    ("python3-full", f"python3 - <<'EOF'{PY_STDLIB}EOF",
     "imported all 291 modules\ntrimmed runtime first: /usr/lib/python3.11/json/__init__.pyc"),
    ("python3-full", f"cd /tmp && python3 - <<'EOF'{PY_WORK}EOF",
     ("sqlite3 42 5\ndecimal 0.1428571428571428571428571428571428571429\nread back dbm.gnu\n"
      "read back dbm.ndbm\nssl served-over-tls\ncurses True True")),
    # Two steps, each with its own timeout: ensurepip byte-compiles pip and setuptools,
    # 50-127 s under TCG (ACTION_TIMEOUT).
    ("python3-full", "python3 -m venv ~/venv && ~/venv/bin/pip --version",
     "pip 23.0.1 from "),
    ("python3-full", (f"python3 - <<'EOF'{PY_WHEEL}EOF\n"
                      "~/venv/bin/pip --disable-pip-version-check "
                      "install -q --no-index /tmp/hello-1.0-py3-none-any.whl && "
                      "~/venv/bin/python -c 'import hello; print(hello.greet())' && "
                      "python3 -c 'import hello' 2>&1 | tail -1"),
     "hello from a venv\nModuleNotFoundError: No module named 'hello'"),
    # The daemons, as supervised services under their own users (docs/packages.md,
    # "Services"); test_daemons_confined_and_closed_until_allowed looks at them further.
    ("redis", ("mixos-service enable --now redis && for i in $(seq 30); do "
               "redis-cli ping 2>/dev/null | grep -q PONG && break; sleep 1; done; "
               "redis-cli set collection mixos-redis && redis-cli get collection && "
               "ps -o user,comm | grep redis-server"), "OK\nmixos-redis\nredis    redis-server"),
    ("postgresql", ("mixos-service enable --now postgresql && for i in $(seq 90); do "
                    "chpst -u postgres:postgres pg_isready -q && break; sleep 2; done; cd /tmp && "
                    "chpst -u postgres:postgres psql -tAc 'select 6*7' && "
                    "chpst -u postgres:postgres psql -qc \"alter user postgres password 'pw'\" && "
                    "PGPASSWORD=pw psql -h 127.0.0.1 -U postgres -tAc "
                    "'select current_user, inet_server_addr()'"), "42\npostgres|127.0.0.1"),
    ("haproxy", ("mkdir -p /tmp/www && echo proxied-by-haproxy > /tmp/www/index.html && "
                 "httpd -p 127.0.0.1:8081 -h /tmp/www && printf 'frontend collection\\n"
                 "\\tbind :8080\\n\\tdefault_backend web\\nbackend web\\n"
                 "\\tserver httpd 127.0.0.1:8081\\n' > /etc/haproxy/conf.d/collection.cfg && "
                 "mixos-service enable --now haproxy && sleep 2 && "
                 "curl -sS http://127.0.0.1:8080/ && ps -o user,comm | grep '^haproxy'"),
     "proxied-by-haproxy\nhaproxy  haproxy"),
    ("chrony", ("mixos-service disable --now ntpd && printf 'server 127.0.0.1 iburst\\n' "
                "> /etc/chrony/sources.d/collection.sources && "
                # chronyd reads sources.d as _chrony; a login shell's umask is 027.
                "chmod 644 /etc/chrony/sources.d/collection.sources && "
                "mixos-service enable --now chrony && for i in $(seq 30); do "
                "chronyc -n sources 2>&1 | grep -q 127.0.0.1 && break; sleep 1; done; "
                "chronyc -n sources | grep -o '127.0.0.1' && ps -o user,comm | grep -m1 chronyd; "
                "mixos-service logs chrony -n 5 >&2"),
     "127.0.0.1\n_chrony  chronyd"),
]


def test_every_program_of_the_collection_has_an_action() -> None:
    assert sorted({a[0] for a in ACTIONS}) == programs()


@pytest.mark.parametrize("package,command,expected", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_package_does_its_job(installed: tuple[Guest, dict[str, str]], http_repo: str,
                              dns_server: int, container_www: str, package: str,
                              command: str, expected: str) -> None:
    g, _ = installed
    index_sha = hashlib.sha256((ARTIFACTS / "repo" / "index.json").read_bytes()).hexdigest()
    cmd = (command.replace("{repo}", http_repo).replace("{dns_port}", str(dns_server))
           .replace("{www}", container_www))
    want = expected.replace("{index_sha}", index_sha)
    # A newline: ash reads the aliases /etc/profile.d defines before parsing CMD.
    proc = g.ssh(f". /etc/profile\n{cmd}", timeout=ACTION_TIMEOUT.get(package, 180), check=False)
    assert want in proc.stdout, (f"{package}: {cmd}\nexit {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


# Daemon -> (its AppArmor profile, the user it serves as, the process name of that user's
# process): the supervised pid is in the profile; the user's process serves.
DAEMONS = {"haproxy": ("haproxy", "haproxy", "haproxy"),
           "redis": ("redis", "redis", "redis-server"),
           "postgresql": ("postgresql", "postgres", "postgres"),
           "chrony": ("chrony", "_chrony", "chronyd")}


def host_probe(port: int, send: bytes, until: bytes, timeout: float = 5) -> bytes:
    """What a client on the host gets back through QEMU's forward of PORT (read until
    UNTIL arrives or the connection ends): b"" when the guest drops the connection (QEMU
    accepts on the host side, then waits in vain)."""
    got = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(send)
            while len(got) < 4096 and until not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
    except OSError:
        pass  # a timeout after the answer's first bytes (Redis keeps the connection)
    return got


def test_daemons_confined_and_closed_until_allowed(
        installed: tuple[Guest, dict[str, str]], forwarded: dict[int, int],
        http_repo: str) -> None:
    """After the ACTIONS: each daemon's profile is loaded in enforce mode and holds its
    supervised process; its serving process runs as its own user; chrony refuses to run
    beside ntpd; each port answers the host only while `mixos-firewall allow` opens it;
    nginx's profile comes and goes with its package; no profile denied anything."""
    g, _ = installed
    loaded = g.sh("cat /sys/kernel/security/apparmor/profiles")
    for service, (profile, user, comm) in DAEMONS.items():
        assert f"{profile} (enforce)" in loaded.splitlines(), loaded
        pid = g.sh(f"cat /run/service/{service}/supervise/pid").strip()
        assert g.sh(f"cat /proc/{pid}/attr/current").strip() == f"{profile} (enforce)"
        uid = g.sh(f"id -u {user}").strip()
        serving = g.sh(f"for p in $(pidof {comm}); do grep '^Uid:' /proc/$p/status; done")
        assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in serving, (service, user, serving)

    # At boot mixos-apparmor loads them with the base profiles (compiled: no binaries).
    booted = g.sh("mixos-apparmor start", timeout=120)
    assert f"and {len(DAEMONS)} compiled profile file(s) loaded" in booted, booted
    assert g.sh(f"cat /proc/{pid}/attr/current").strip() == f"{profile} (enforce)"

    # chrony and BusyBox ntpd: ntpd enabled again, chrony refuses and stays down.
    g.sh("mixos-service enable --now ntpd", timeout=60)
    g.ssh("mixos-service restart chrony", timeout=60, check=False)  # exits 1: not up
    assert "not started: BusyBox ntpd" in g.sh("mixos-service logs chrony -n 3")
    assert g.sh("pidof chronyd; true").strip() == ""

    # Redis and PostgreSQL listen on loopback only as shipped: made to listen everywhere.
    g.sh("redis-cli config set requirepass pw && "
         "redis-cli --no-auth-warning -a pw config set bind '* -::*'")
    g.sh("cd /tmp && chpst -u postgres:postgres psql -qc \"alter system set "
         "listen_addresses = '*'\" && mixos-service restart postgresql && for i in $(seq 60); "
         "do chpst -u postgres:postgres pg_isready -q -h 127.0.0.1 && break; sleep 1; done",
         timeout=120)
    probes = {8080: (b"GET / HTTP/1.0\r\n\r\n", b"proxied-by-haproxy"),
              6379: (b"AUTH pw\r\nPING\r\n", b"+OK\r\n+PONG\r\n"),
              5432: ((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"), b"N")}  # SSLRequest
    for port, (send, answer) in probes.items():
        assert host_probe(forwarded[port], send, answer) == b"", f"{port} answered before allow"
        g.sh(f"mixos-firewall allow {port}/tcp")
        got = host_probe(forwarded[port], send, answer, timeout=15)
        assert answer in got, (port, got)
        g.sh(f"mixos-firewall deny {port}/tcp")
        assert host_probe(forwarded[port], send, answer) == b"", f"{port} answered after deny"

    # nginx (a full recipe, not in the collection): its profile is loaded by mix install,
    # holds master and workers, and is unloaded by mix remove.
    said = g.sh(f"mix --repo {http_repo} -y install nginx", timeout=300)
    assert "mixos-apparmor: loaded /etc/apparmor.d/nginx" in said, said
    g.sh("mixos-service enable --now nginx && sleep 2", timeout=60)
    assert "Welcome to nginx" in g.sh("curl -sS http://127.0.0.1/")
    current = g.sh("for p in $(pidof nginx); do cat /proc/$p/attr/current; echo; done")
    assert current.split() == ["nginx", "(enforce)"] * 2, current
    assert "www-data" in g.sh("ps -o user,comm | grep nginx")
    said = g.sh("mix -y remove nginx", timeout=300)
    assert "mixos-apparmor: unloaded /etc/apparmor.d/nginx" in said, said
    assert "nginx" not in g.sh("cat /sys/kernel/security/apparmor/profiles")

    denied = g.sh("dmesg | grep 'apparmor=\"DENIED\"' | grep -E "
                  "'profile=\"(haproxy|redis|postgresql|chrony|nginx)\"'; true")
    assert denied == "", denied


def test_openssh_client_copies_files_over_sftp(installed: tuple[Guest, dict[str, str]],
                                               http_repo: str) -> None:
    """The OpenSSH client (not a compact recipe: MixOS's own openssh package) from the
    same repository: sftp puts and gets a file through the guest's own sshd with a key
    made for it, scp copies one back; then the key and the package are gone again."""
    g, _ = installed
    g.sh(f"mix --repo {http_repo} -y install openssh", timeout=300)
    g.sh("cp /root/.ssh/authorized_keys /tmp/authorized_keys.saved && "
         "ssh-keygen -q -t ed25519 -N '' -f /tmp/sftp_key && "
         "cat /tmp/sftp_key.pub >> /root/.ssh/authorized_keys && "
         "printf 'put /etc/os-release /tmp/sftp-put\\nget /tmp/sftp-put /tmp/sftp-got\\n' "
         "> /tmp/sftp.batch")
    try:
        opts = "-i /tmp/sftp_key -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/tmp/kh"
        proc = g.ssh(f"sftp {opts} -b /tmp/sftp.batch root@127.0.0.1 && "
                     f"scp {opts} root@127.0.0.1:/etc/hostname /tmp/scp-got && "
                     "cmp /etc/os-release /tmp/sftp-got && cmp /etc/hostname /tmp/scp-got && "
                     "echo copied", timeout=120, check=False)
        assert "copied" in proc.stdout, proc.stdout + proc.stderr
    finally:
        g.sh("cp /tmp/authorized_keys.saved /root/.ssh/authorized_keys")
    g.sh("mix -y remove openssh", timeout=300)
    assert g.ssh("command -v sftp", check=False).returncode != 0


def http_get(port: int, timeout: float = 8) -> str:
    """The page at 127.0.0.1:PORT on the host (a QEMU host forward), "" when nothing
    answers: QEMU accepts the connection, then the guest drops its SYNs."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as r:
            return str(r.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError):
        return ""


def test_published_port_is_closed_until_allowed(installed: tuple[Guest, dict[str, str]],
                                                container_www: str,
                                                forwarded: dict[int, int]) -> None:
    """A port a container publishes (`podman run -p 8088:80`, netavark's DNAT and
    FORWARD rules) stays closed from the network, like any port, until `mixos-firewall
    allow 8088/tcp`; `deny` closes it again. The host itself reaches it all along, and
    the container's own egress (MASQUERADE) works after each reload of the rules."""
    g, _ = installed
    published_port = forwarded[PUBLISHED]
    page = "published-by-container"
    g.sh("cp -a /etc/mixos/firewall /tmp/firewall.published && mkdir -p /var/lib/containers && "
         "mount -t tmpfs -o size=256m containers /var/lib/containers && "
         f"wget -q -O /tmp/busybox.tar {container_www}/busybox.tar && "
         "podman load -q -i /tmp/busybox.tar >/dev/null && "
         f"podman run -d --name pub -p {PUBLISHED}:80 {IMAGE} sh -c 'mkdir /www && "
         f"echo {page} > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null && sleep 2",
         timeout=180)
    egress = f"podman run --rm {IMAGE} wget -q -O - {container_www}/hello.txt"
    try:
        assert page in g.sh(f"wget -q -O - http://127.0.0.1:{PUBLISHED}/")
        assert http_get(published_port) == "", "published port open before any allow"
        forward = g.sh("iptables -S FORWARD")
        assert "--ctstate DNAT -j MIXOS-PUBLISHED" in forward, forward

        g.sh(f"mixos-firewall allow {PUBLISHED}/tcp", timeout=120)
        assert page in http_get(published_port, timeout=30)
        assert f"{PUBLISHED}/tcp" in g.sh("mixos-firewall list").splitlines()
        assert CONTAINER_HELLO in g.sh(egress, timeout=120), "egress lost after allow"

        g.sh(f"mixos-firewall deny {PUBLISHED}/tcp", timeout=120)
        assert http_get(published_port) == "", "published port still open after deny"
        assert CONTAINER_HELLO in g.sh(egress, timeout=120), "egress lost after deny"
        # A rule for another source does not open it for QEMU's 10.0.2.2 either.
        g.sh(f"mixos-firewall allow {PUBLISHED}/tcp from 192.0.2.0/24", timeout=120)
        assert http_get(published_port) == ""
        g.sh(f"mixos-firewall deny {PUBLISHED}/tcp", timeout=120)
    finally:
        g.ssh("podman rm -f -t 0 pub >/dev/null; podman rmi -a -f >/dev/null; "
              "podman system reset -f >/dev/null 2>&1; umount /var/lib/containers; "
              "rmdir /var/lib/containers; rm -f /etc/containers/networks/netavark.lock; "
              "rmdir /etc/containers/networks; "
              "for f in allowed allowed.rules; do [ -e /tmp/firewall.published/$f ] || "
              "rm -f /etc/mixos/firewall/$f; done", timeout=180, check=False)
    assert g.sh("diff -r /tmp/firewall.published /etc/mixos/firewall && echo same") == "same\n"


def test_removing_the_collection_leaves_the_base_unchanged(
        installed: tuple[Guest, dict[str, str]]) -> None:
    g, before = installed
    g.ssh("killall tmux openssl iperf3 gpg-agent httpd", check=False)
    g.sh("rm -f /etc/haproxy/conf.d/collection.cfg /etc/chrony/sources.d/collection.sources")
    assert g.sh("grep -c '^tcpdump:' /etc/passwd") == "1\n"
    g.sh(f"mix -y remove {' '.join(collection())}", timeout=600)
    assert g.sh("mix list --installed") == before["packages"]
    assert g.sh("sha256sum /etc/passwd /etc/group /etc/shadow") == before["etc"]
    g.sh("mix verify", timeout=300)
    assert g.ssh(f"ls {FULL_BIN}", check=False).returncode != 0
    # mix stopped the daemons and unloaded their profiles before their files went.
    assert g.sh("pidof haproxy redis-server postgres chronyd; true").strip() == ""
    loaded = g.sh("cat /sys/kernel/security/apparmor/profiles")
    assert not [p for p in DAEMONS if f"{p} (enforce)" in loaded], loaded
