"""Network probes the VM security tests run from inside a host network namespace
(`ip netns exec NS python3 security_probe.py ...`), against the guest's tap NIC.
Stdlib only; every probe is bounded in time. Prints one JSON value.

  scan HOST FIRST LAST [--batch N] [--timeout S] [--source ADDR]
        TCP connect scan of ports FIRST..LAST: {"open": [ports], "refused": count,
        "filtered": count, "seconds": s}. Non-blocking connects in batches, each
        batch waited for with poll(): the kernel retransmits a SYN after 1 s and
        3 s, so a --timeout of 3.5 s gives every port three tries.
  connect HOST PORT N [--source ADDR] [--timeout S]
        N simultaneous connects: {"opened": k, "attempts": N}
  ping HOST N [--timeout S]
        N ICMP echo requests sent back to back (raw socket): {"sent": N, "replies": k}
  sshkex HOST PORT [--timeout S]
        What an SSH server offers on the wire: its identification line and every
        name-list of its first SSH_MSG_KEXINIT (RFC 4253 7.1), in order, as sent:
        {"banner": s, "kex": [...], "host_key": [...], "ciphers_c2s": [...], ...}
  ntpserve ADDR SECONDS OFFSET
        An NTP server on ADDR:123 for SECONDS that answers every client request
        with its own clock plus OFFSET seconds; prints "ready" once bound, then
        {"requests": n}
  ntpquery HOST [--timeout S]
        One NTP client request to HOST:123: {"reply": true|false}
  udplisten ADDR PORT SECONDS MARKER
        Receive UDP datagrams on ADDR:PORT (a syslog listener) until one holds
        MARKER or SECONDS pass; prints "ready" once bound, then
        {"received": [datagrams holding MARKER, as text], "others": count}
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import select
import socket
import struct
import time


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def raise_fd_limit(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY else max(soft, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def scan_batch(host: str, ports: list[int], timeout: float, source: str) -> dict[int, str]:
    fam = family(host)
    poller = select.poll()
    socks: dict[int, tuple[socket.socket, int]] = {}
    result: dict[int, str] = {}
    for port in ports:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        if source:
            s.bind((source, 0))
        code = s.connect_ex((host, port))
        if code in (0, errno.EINPROGRESS):
            socks[s.fileno()] = (s, port)
            poller.register(s.fileno(), select.POLLOUT)
        else:
            result[port] = "refused" if code == errno.ECONNREFUSED else "filtered"
            s.close()
    deadline = time.monotonic() + timeout
    while socks and (left := deadline - time.monotonic()) > 0:
        for fd, _event in poller.poll(left * 1000):
            s, port = socks.pop(fd)
            poller.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            result[port] = "open" if err == 0 else (
                "refused" if err == errno.ECONNREFUSED else "filtered")
            s.close()
    for s, port in socks.values():
        result[port] = "filtered"
        s.close()
    return result


def scan(host: str, first: int, last: int, batch: int, timeout: float, source: str) -> dict:
    batch = min(batch, raise_fd_limit(batch + 64) - 64)
    start = time.monotonic()
    states: dict[int, str] = {}
    ports = list(range(first, last + 1))
    for i in range(0, len(ports), batch):
        states.update(scan_batch(host, ports[i:i + batch], timeout, source))
    return {"open": sorted(p for p, s in states.items() if s == "open"),
            "refused": sum(1 for s in states.values() if s == "refused"),
            "filtered": sum(1 for s in states.values() if s == "filtered"),
            "seconds": round(time.monotonic() - start, 1)}


def connect(host: str, port: int, n: int, timeout: float, source: str) -> dict:
    fam = family(host)
    poller = select.poll()
    socks: dict[int, socket.socket] = {}
    for _ in range(n):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        if source:
            s.bind((source, 0))
        s.connect_ex((host, port))
        socks[s.fileno()] = s
        poller.register(s.fileno(), select.POLLOUT)
    opened = 0
    deadline = time.monotonic() + timeout
    while socks and (left := deadline - time.monotonic()) > 0:
        for fd, _event in poller.poll(left * 1000):
            s = socks.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                opened += 1
            s.close()
    for s in socks.values():
        s.close()
    return {"opened": opened, "attempts": n}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(host: str, n: int, timeout: float) -> dict:
    v6 = ":" in host
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        request, reply = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        request, reply = 8, 0
    ident = os.getpid() & 0xFFFF
    for seq in range(n):
        header = struct.pack("!BBHHH", request, 0, 0, ident, seq)
        payload = b"mixos-ping-limit"
        csum = 0 if v6 else checksum(header + payload)  # the kernel fills ICMPv6's
        s.sendto(struct.pack("!BBHHH", request, 0, csum, ident, seq) + payload, (host, 0))
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = s.recv(2048)
        except TimeoutError:
            continue
        icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
        kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if kind == reply and rid == ident:
            seen.add(rseq)
    s.close()
    return {"sent": n, "replies": len(seen)}


KEXINIT_LISTS = ("kex", "host_key", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c",
                 "compression_c2s", "compression_s2c", "languages_c2s", "languages_s2c")


def recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"the server closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def sshkex(host: str, port: int, timeout: float) -> dict:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"SSH-2.0-MixOS_security_probe\r\n")
        # The server may send lines before its identification (RFC 4253 4.2).
        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = s.recv(1)
                if not chunk:
                    raise ConnectionError("the server closed the connection before identifying")
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"SSH-"):
                banner = line.rstrip(b"\r").decode("ascii", "replace")
                break
        # The first binary packet, unencrypted: length, padding length, payload.
        head = buf + recv_exact(s, max(0, 5 - len(buf)))
        length, _padding = struct.unpack("!IB", head[:5])
        rest = head[5:] + recv_exact(s, length - 1 - len(head[5:]))
    payload = rest[:length - 1 - _padding]
    if payload[0] != 20:
        raise ValueError(f"the first packet is message {payload[0]}, not SSH_MSG_KEXINIT (20)")
    offset = 1 + 16  # message number, cookie
    out: dict[str, object] = {"banner": banner}
    for name in KEXINIT_LISTS:
        (n,) = struct.unpack("!I", payload[offset:offset + 4])
        text = payload[offset + 4:offset + 4 + n].decode("ascii")
        out[name] = text.split(",") if text else []
        offset += 4 + n
    return out


NTP_EPOCH = 2208988800  # 1900-01-01 to 1970-01-01, in seconds


def ntp_stamp(t: float) -> bytes:
    seconds = int(t)
    return struct.pack("!II", seconds + NTP_EPOCH, int((t - seconds) * 2**32) & 0xFFFFFFFF)


def ntpserve(addr: str, seconds: float, offset: float) -> dict:
    requests = 0
    with socket.socket(family(addr), socket.SOCK_DGRAM) as s:
        s.bind((addr, 123))
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, peer = s.recvfrom(1024)
            except TimeoutError:
                break
            if len(data) < 48 or data[0] & 0x07 != 3:  # client mode only
                continue
            requests += 1
            now = time.time() + offset
            # LI 0, version 4, mode 4 (server); stratum 2; the client's poll;
            # precision 2^-20; root delay and dispersion 1/65536 s; reference id.
            reply = (struct.pack("!BBbbII4s", 0x24, 2, data[2], -20, 1, 1, b"MIXS")
                     + ntp_stamp(now - 1) + data[40:48] + ntp_stamp(now) + ntp_stamp(now))
            s.sendto(reply, peer)
    return {"requests": requests}


def ntpquery(host: str, timeout: float) -> dict:
    with socket.socket(family(host), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"\x23" + b"\0" * 39 + ntp_stamp(time.time()), (host, 123))
        try:
            s.recv(1024)
        except (TimeoutError, ConnectionRefusedError):
            return {"reply": False}
    return {"reply": True}


def udplisten(addr: str, port: int, seconds: float, marker: str) -> dict:
    with socket.socket(family(addr), socket.SOCK_DGRAM) as s:
        s.bind((addr, port))
        print("ready", flush=True)
        received: list[str] = []
        others = 0
        deadline = time.monotonic() + seconds
        while not received and (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data = s.recv(65536).decode("utf-8", "replace")
            except TimeoutError:
                break
            if marker in data:
                received.append(data)
            else:
                others += 1
    return {"received": received, "others": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("scan")
    p.add_argument("host")
    p.add_argument("first", type=int)
    p.add_argument("last", type=int)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=3.5)
    p.add_argument("--source", default="")
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("n", type=int)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--source", default="")
    g = sub.add_parser("ping")
    g.add_argument("host")
    g.add_argument("n", type=int)
    g.add_argument("--timeout", type=float, default=3.0)
    k = sub.add_parser("sshkex")
    k.add_argument("host")
    k.add_argument("port", type=int)
    k.add_argument("--timeout", type=float, default=15.0)
    u = sub.add_parser("udplisten")
    u.add_argument("addr")
    u.add_argument("port", type=int)
    u.add_argument("seconds", type=float)
    u.add_argument("marker")
    n = sub.add_parser("ntpserve")
    n.add_argument("addr")
    n.add_argument("seconds", type=float)
    n.add_argument("offset", type=float)
    q = sub.add_parser("ntpquery")
    q.add_argument("host")
    q.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    if args.cmd == "ntpserve":
        out = ntpserve(args.addr, args.seconds, args.offset)
    elif args.cmd == "ntpquery":
        out = ntpquery(args.host, args.timeout)
    elif args.cmd == "sshkex":
        out = sshkex(args.host, args.port, args.timeout)
    elif args.cmd == "udplisten":
        out = udplisten(args.addr, args.port, args.seconds, args.marker)
    elif args.cmd == "scan":
        out = scan(args.host, args.first, args.last, args.batch, args.timeout, args.source)
    elif args.cmd == "connect":
        out = connect(args.host, args.port, args.n, args.timeout, args.source)
    else:
        out = ping(args.host, args.n, args.timeout)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
