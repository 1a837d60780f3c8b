"""A censor that reassembles: it reads the TLS stream, not single packets.

Run inside the isp namespace (``python -m tests.lab.reassembler --queue N
--name x.com``). An iptables rule sends the vantage's packets to port 443 to
NFQUEUE ``N`` (in FORWARD, so a packet whose TTL ends at the isp never
reaches it, as with the string-match rules). Per connection it puts the
client's payload together by sequence number (bounded: 16 KiB per flow, 256
flows), reads TLS handshake records across segments and records until the
ClientHello is complete, and then decides once: a blocked server name drops
the packet that completed it and resets the client with a RST spoofed from
the server (IP TTL 64, as the kernel's REJECT does); any other name lets the
flow pass uninspected. So the ClientHello split across TCP segments or TLS
records is blocked here, where the ``sni_reset`` string match lets it pass.

Talks nfnetlink_queue with :mod:`tests.lab.delayer`'s helpers (packets
copied). It exits when its parent dies.
"""

from __future__ import annotations

import argparse
import collections
import socket
import struct

from tests.lab.delayer import configure, queued, verdict
from tests.lab.injector import checksum
from tests.lab.netns import die_with_parent

READY = "reassembler: inspecting"
MAX_FLOW_BYTES = 16384
MAX_FLOWS = 256
_FIN, _SYN, _RST = 0x01, 0x02, 0x04

Key = tuple[str, int, str, int]


class Flow:
    def __init__(self, isn: int) -> None:
        self.base = (isn + 1) % 2**32
        self.segments: dict[int, bytes] = {}
        self.decided: bool | None = None  # True: blocked, False: passed

    def add(self, seq: int, payload: bytes) -> bytes:
        """Store a segment; return the contiguous stream from the first byte."""
        offset = (seq - self.base) % 2**32
        if offset < MAX_FLOW_BYTES:
            self.segments[offset] = payload[: MAX_FLOW_BYTES - offset]
        stream = b""
        while len(stream) in self.segments:
            piece = self.segments[len(stream)]
            if not piece:
                break
            stream += piece
        return stream


def client_hello_sni(stream: bytes) -> str | bool | None:
    """The SNI of the ClientHello in ``stream`` (TLS records, possibly several): the
    name, ``None`` if complete without one, ``False`` if more bytes are needed."""
    handshake = b""
    pos = 0
    while pos + 5 <= len(stream):
        kind, size = stream[pos], struct.unpack("!H", stream[pos + 3 : pos + 5])[0]
        if kind != 0x16:
            return None  # not a handshake: nothing to inspect
        if pos + 5 + size > len(stream):
            break
        handshake += stream[pos + 5 : pos + 5 + size]
        pos += 5 + size
        if len(handshake) >= 4:
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if len(handshake) >= need:
                return _sni(handshake[4:need]) if handshake[0] == 1 else None
    return False


def _sni(hello: bytes) -> str | None:
    try:
        pos = 2 + 32  # version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + struct.unpack("!H", hello[pos : pos + 2])[0]  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = pos + 2 + struct.unpack("!H", hello[pos : pos + 2])[0]
        pos += 2
        while pos + 4 <= end:
            etype, esize = struct.unpack("!HH", hello[pos : pos + 4])
            if etype == 0:  # server_name: list length, type, name length, name
                size = struct.unpack("!H", hello[pos + 7 : pos + 9])[0]
                return hello[pos + 9 : pos + 9 + size].decode("ascii", "replace").lower()
            pos += 4 + esize
    except (IndexError, struct.error):
        return None
    return None


def reset_for(packet: bytes) -> tuple[bytes, str]:
    """A RST to the sender of ``packet`` (a client segment), spoofed from its destination."""
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    sport, dport, _, ack = struct.unpack("!HHII", packet[ihl : ihl + 12])
    tcp = struct.pack("!HHIIBBHHH", dport, sport, ack, 0, 5 << 4, _RST, 0, 0, 0)
    pseudo = dst + src + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, dst, src)
    return ip + tcp, socket.inet_ntoa(src)


def decide(flows: collections.OrderedDict[Key, Flow], packet: bytes, names: frozenset[str]) -> bool:
    """Whether to let ``packet`` (a client -> server TCP segment) through."""
    if len(packet) < 40 or packet[9] != socket.IPPROTO_TCP:
        return True
    ihl = (packet[0] & 0x0F) * 4
    sport, dport, seq = struct.unpack("!HHI", packet[ihl : ihl + 8])
    flags = packet[ihl + 13]
    key = (socket.inet_ntoa(packet[12:16]), sport, socket.inet_ntoa(packet[16:20]), dport)
    if flags & _SYN:
        flows[key] = Flow(seq)
        while len(flows) > MAX_FLOWS:
            flows.popitem(last=False)
        return True
    flow = flows.get(key)
    if flow is None or flags & (_RST | _FIN):
        flows.pop(key, None)
        return True
    if flow.decided is not None:
        return not flow.decided
    payload = packet[ihl + (packet[ihl + 12] >> 4) * 4 :]
    if not payload:
        return True
    sni = client_hello_sni(flow.add(seq, payload))
    if sni is False:
        return True  # not complete yet: the server buffers it, as it would without us
    flow.decided = sni in names  # exact, as the sni_reset string match is
    return not flow.decided


def run(queue: int, names: frozenset[str]) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    sock.bind((0, 0))
    configure(sock, queue, copy_packet=True)
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    flows: collections.OrderedDict[Key, Flow] = collections.OrderedDict()
    print(f"{READY} queue {queue} for {' '.join(sorted(names))}", flush=True)
    while True:
        for packet_id, packet in queued(sock.recv(262144)):
            allow = decide(flows, packet, names)
            verdict(sock, queue, packet_id, accept=allow)
            if not allow:
                rst, client = reset_for(packet)
                sender.sendto(rst, (client, 0))
                print(f"reset {client} (ClientHello for a blocked name)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.reassembler")
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    parser.add_argument("--name", action="append", required=True, help="blocked SNI (exact)")
    args = parser.parse_args(argv)
    die_with_parent()
    run(args.queue, frozenset(n.lower().rstrip(".") for n in args.name))


if __name__ == "__main__":
    main()
