"""Replays nf_tables netlink batches captured from nft (strace -e write=FD hex dumps) on
a fresh NETLINK_NETFILTER socket, with no cache and no libnftables: R rounds, each
sending every capture in turn (so an add and a delete of the same element are both real
changes every time), and prints each capture's median sendmsg time (the kernel
processes and commits a batch inside it). Usage: nft_floor_replay.py R CAPTURE..."""
import re
import socket
import sys
import time

NETLINK_NETFILTER = 12
NLMSG_ERROR = 2


def load(path):
    data = bytearray()
    for line in open(path):
        m = re.match(r"^ \| [0-9a-f]{5}  (.{48})", line)
        if m:
            data += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(data)


def errors(sock):
    """Non-zero NLMSG_ERROR codes waiting on the socket."""
    found = []
    sock.setblocking(False)
    try:
        while True:
            r = sock.recv(1 << 16)
            off = 0
            while off + 20 <= len(r):
                length = int.from_bytes(r[off:off + 4], "little")
                kind = int.from_bytes(r[off + 4:off + 6], "little")
                if kind == NLMSG_ERROR:
                    code = int.from_bytes(r[off + 16:off + 20], "little", signed=True)
                    if code:
                        found.append(code)
                off += max(length, 20) + (-length % 4)
    except BlockingIOError:
        pass
    sock.setblocking(True)
    return found


runs, paths = int(sys.argv[1]), sys.argv[2:]
batches = [load(p) for p in paths]
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
sock.bind((0, 0))
times = [[] for _ in batches]
for _ in range(runs):
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        sock.send(batch)
        times[i].append(time.perf_counter() - start)
        bad = errors(sock)
        if bad:
            sys.exit(f"{paths[i]}: the kernel refused the batch: errno {-bad[0]}")
for path, t, batch in zip(paths, times, batches):
    t.sort()
    name = path.rsplit("/", 1)[-1].removesuffix(".strace")
    print(f"{name}: median {t[len(t) // 2] * 1e3:.2f} ms (min {t[0] * 1e3:.2f}, max {t[-1] * 1e3:.2f}, {runs} runs, {len(batch)} bytes)")
