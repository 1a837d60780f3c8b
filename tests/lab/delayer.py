"""Distance on demand: hold the packets an iptables ``NFQUEUE`` rule selects, then let them go.

Run inside the isp namespace (``python -m tests.lab.delayer --queue N --delay-ms MS``).
The lab's links are veth pairs, microseconds long, and the kernel here has no
``netem``; but a censor's tap sits closer to the user than the resolvers it
races. This process gives chosen packets that distance: it binds an nfnetlink
queue, and accepts each queued packet ``MS`` milliseconds after it arrived,
in arrival order. The rule should use ``--queue-bypass`` so packets pass if
this process is gone.

Talks nfnetlink_queue directly over a netlink socket (no library): bind the
queue, ask for metadata only, read packet ids, send ACCEPT verdicts. It exits
when its parent dies, so it cannot outlive the lab that started it.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import struct
import time

from tests.lab.netns import die_with_parent

_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_PACKET = 0
_NFQNL_MSG_VERDICT = 1
_NFQNL_MSG_CONFIG = 2
_NFQA_PACKET_HDR = 1
_NFQA_VERDICT_HDR = 2
_NFQA_CFG_CMD = 1
_NFQA_CFG_PARAMS = 2
_CMD_BIND = 1
_COPY_META = 1
_COPY_PACKET = 2
_NFQA_PAYLOAD = 10
_NF_DROP = 0
_NF_ACCEPT = 1
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLMSG_ERROR = 2
_NLA_TYPE_MASK = 0x3FFF
READY = "delayer: holding"


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _message(kind: int, queue: int, attrs: bytes, flags: int = _NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    header = struct.pack("=IHHII", 16 + len(body), (_NFNL_SUBSYS_QUEUE << 8) | kind, flags, 0, 0)
    return header + body


def configure(sock: socket.socket, queue: int, copy_packet: bool = False) -> None:
    """Bind ``queue`` and ask for metadata only (or whole packets); raise if the kernel
    refuses. Also used by :mod:`tests.lab.reassembler`."""
    params = (
        struct.pack("!IB", 0xFFFF, _COPY_PACKET)
        if copy_packet
        else struct.pack("!IB", 0, _COPY_META)
    )
    requests = (
        _attr(_NFQA_CFG_CMD, struct.pack("!BxH", _CMD_BIND, socket.AF_INET)),
        _attr(_NFQA_CFG_PARAMS, params),
    )
    for attrs in requests:
        sock.send(_message(_NFQNL_MSG_CONFIG, queue, attrs, _NLM_F_REQUEST | _NLM_F_ACK))
        reply = sock.recv(65536)
        kind = struct.unpack("=H", reply[4:6])[0]
        error = struct.unpack("=i", reply[16:20])[0] if kind == _NLMSG_ERROR else 0
        if error:
            raise OSError(-error, f"nfqueue {queue}: {os.strerror(-error)}")


def packet_ids(data: bytes) -> list[int]:
    """The packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    return [packet_id for packet_id, _ in queued(data)]


def queued(data: bytes) -> list[tuple[int, bytes]]:
    """``(packet id, packet)`` of each NFQNL_MSG_PACKET in one netlink read (the packet
    is empty unless the queue copies packets)."""
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 16 <= len(data):
        length, kind = struct.unpack("=IH", data[pos : pos + 6])
        if length < 16:
            break
        if kind == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
            attr = pos + 20  # netlink header, nfgenmsg
            packet_id, payload = None, b""
            while attr + 4 <= pos + length:
                size, atype = struct.unpack("=HH", data[attr : attr + 4])
                if size < 4:
                    break
                if atype & _NLA_TYPE_MASK == _NFQA_PACKET_HDR:
                    packet_id = struct.unpack("!I", data[attr + 4 : attr + 8])[0]
                elif atype & _NLA_TYPE_MASK == _NFQA_PAYLOAD:
                    payload = data[attr + 4 : attr + size]
                attr += (size + 3) & ~3
            if packet_id is not None:
                found.append((packet_id, payload))
        pos += (length + 3) & ~3
    return found


def verdict(sock: socket.socket, queue: int, packet_id: int, accept: bool = True) -> None:
    body = struct.pack("!II", _NF_ACCEPT if accept else _NF_DROP, packet_id)
    sock.send(_message(_NFQNL_MSG_VERDICT, queue, _attr(_NFQA_VERDICT_HDR, body)))


def run(queue: int, delay: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    sock.bind((0, 0))
    configure(sock, queue)
    print(f"{READY} queue {queue} for {delay * 1000:g} ms", flush=True)
    held: collections.deque[tuple[float, int]] = collections.deque()
    while True:
        sock.settimeout(max(0.0005, held[0][0] - time.monotonic()) if held else None)
        try:
            data = sock.recv(65536)
            arrived = time.monotonic()
            held.extend((arrived + delay, i) for i in packet_ids(data))
        except TimeoutError:
            pass
        while held and held[0][0] <= time.monotonic():
            verdict(sock, queue, held.popleft()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.delayer")
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    run(args.queue, args.delay_ms / 1000)


if __name__ == "__main__":
    main()
