"""An on-path DNS injector, as the Great Firewall runs one: it races the real resolver.

Run inside the isp namespace (``python -m tests.lab.injector ...``). It
watches every packet arriving on one interface (``AF_PACKET``: a copy, the
original is routed or delivered untouched), and for a UDP DNS query of type A
whose qname is a blocked name (or a subdomain of one) it sends at once a forged
reply spoofed from the queried resolver's address and port, carrying a bogus A
record. The real query carries on to the real resolver, whose answer comes
later, so the vantage receives two replies with different answers to one
query. It sees queries to the ISP resolver (delivered to the isp itself) and
those forwarded to any resolver beyond the isp alike, but not a query that
arrives with IP TTL 1: the router drops it (time exceeded) before its
forwarding path, where this censor sits, so a TTL-limited trace finds the
injector at the isp's hop, as it finds the isp's iptables rules.

Only A queries are answered: the real AAAA reply (NODATA in the lab) then
arrives alone, which keeps the injected evidence to one record type.

Pure raw sockets, no packet library: the forged datagram is built by hand
with a correct UDP checksum and sent through an ``IPPROTO_RAW`` socket (the
kernel fills the IP checksum), with an SO_MARK so the lab's rules can tell
forged packets from real ones. It exits when its parent dies, so it cannot
outlive the lab that started it.
"""

from __future__ import annotations

import argparse
import socket
import struct

from tests.lab.netns import die_with_parent

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_TYPE_A = 1
_CLASS_IN = 1
_TTL = 300
READY = "injector: listening"


def parse_query(packet: bytes) -> tuple[str, int, str, int, bytes, str, int] | None:
    """(src, sport, dst, dport, dns payload, lowercased qname, qtype) of a UDP query to :53."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 + 12 or struct.unpack("!H", packet[6:8])[0] & 0x3FFF:
        return None  # too short, or a fragment
    sport, dport, length = struct.unpack("!HHH", packet[ihl : ihl + 6])
    payload = packet[ihl + 8 : ihl + length]
    if dport != 53 or len(payload) < 12 or payload[2] & 0x80:  # not a query
        return None
    labels: list[str] = []
    pos = 12
    while pos < len(payload) and payload[pos] != 0:
        size = payload[pos]
        if size & 0xC0:  # no compression in a question we forge for
            return None
        labels.append(payload[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size
    if pos + 5 > len(payload):
        return None
    qtype, qclass = struct.unpack("!HH", payload[pos + 1 : pos + 5])
    if qclass != _CLASS_IN:
        return None
    src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    return src, sport, dst, dport, payload[: pos + 5], ".".join(labels).lower(), qtype


def forge_reply(question: bytes, address: str) -> bytes:
    """A NOERROR answer to ``question`` (header + question of the query) with one A record."""
    query_id, flags = struct.unpack("!HH", question[:4])
    flags = 0x8000 | (flags & 0x7900) | 0x0080  # QR, opcode and RD kept, RA set
    header = struct.pack("!HHHHHH", query_id, flags, 1, 1, 0, 0)
    answer = struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, _TTL, 4) + socket.inet_aton(address)
    return header + question[12:] + answer


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying ``payload`` from src:sport to dst:dport, UDP checksum included."""
    length = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, length)
    udp_sum = checksum(pseudo + struct.pack("!HHHH", sport, dport, length, 0) + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, udp_sum)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # IPv4, 20-byte header
        0,
        20 + length,
        0,  # id: the kernel picks one
        0x4000,  # don't fragment
        64,
        socket.IPPROTO_UDP,
        0,  # header checksum: the kernel fills it in
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return ip + udp + payload


def blocked(qname: str, names: frozenset[str]) -> bool:
    return any(qname == name or qname.endswith("." + name) for name in names)


def run(interface: str, names: frozenset[str], answer: str, mark: int = 0) -> None:
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
    sniffer.bind((interface, _ETH_P_IP))
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    if mark:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    print(f"{READY} on {interface} for {' '.join(sorted(names))} -> {answer}", flush=True)
    while True:
        packet, meta = sniffer.recvfrom(65535)
        if meta[2] == _PACKET_OUTGOING or len(packet) < 20 or packet[8] <= 1:
            continue
        query = parse_query(packet)
        if query is None:
            continue
        src, sport, dst, dport, question, qname, qtype = query
        if qtype != _TYPE_A or not blocked(qname, names):
            continue
        # spoofed from the resolver the client asked: a connected client socket accepts it
        sender.sendto(udp_packet(dst, dport, src, sport, forge_reply(question, answer)), (src, 0))
        print(f"injected {qname} {answer} -> {src}:{sport} as {dst}:{dport}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.injector")
    parser.add_argument("--interface", required=True, help="where the queries arrive")
    parser.add_argument("--name", action="append", required=True, help="blocked name (+subdomains)")
    parser.add_argument("--answer", required=True, help="the forged A record")
    parser.add_argument("--mark", type=int, default=0, help="SO_MARK of the forged packets")
    args = parser.parse_args(argv)
    die_with_parent()
    run(args.interface, frozenset(n.lower().rstrip(".") for n in args.name), args.answer, args.mark)


if __name__ == "__main__":
    main()
