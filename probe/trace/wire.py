"""Dissect a received IPv4 packet (scapy) into the few fields a trace matches on.

Everything arriving on a raw socket is hostile until it matches our flow: any
packet scapy cannot dissect, any truncated header or ICMP quote, becomes
``None`` rather than an exception, and payloads are cut to :data:`MAX_PAYLOAD`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from probe.errors import ExitStatus, ProbeError
from probe.trace.observations import Packet

MAX_PAYLOAD = 4096
ICMP_TIME_EXCEEDED = 11
ICMP_UNREACHABLE = 3
TCP, UDP, ICMP = 6, 17, 1


@dataclass(frozen=True)
class Flow:
    """A transport 4-tuple as seen from the vantage: we sent from ``src:sport``."""

    proto: int
    src: str
    sport: int
    dst: str
    dport: int


@dataclass(frozen=True)
class Received:
    src: str
    dst: str
    proto: int
    ip_ttl: int
    ip_id: int
    ip_df: bool
    sport: int = 0
    dport: int = 0
    tcp_flags: str = ""
    tcp_seq: int = 0
    tcp_ack: int = 0
    tcp_window: int = 0
    tcp_options: tuple[str, ...] = ()
    payload: bytes = b""
    icmp_type: int | None = None
    icmp_code: int | None = None
    quoted: Flow | None = None  # the flow of the packet an ICMP error quotes

    def answers(self, flow: Flow) -> bool:
        """A packet sent by our peer to us on ``flow``."""
        return self.proto == flow.proto and (self.src, self.sport, self.dst, self.dport) == (
            flow.dst,
            flow.dport,
            flow.src,
            flow.sport,
        )

    def quotes(self, flow: Flow) -> bool:
        """An ICMP error about a packet we sent on ``flow``."""
        return self.quoted == flow

    def packet(self, kind: str, t_ms: float) -> Packet:
        tcp = self.proto == TCP
        return Packet(
            kind=kind,
            source=self.src,
            ip_ttl=self.ip_ttl,
            ip_id=self.ip_id,
            ip_df=self.ip_df,
            tcp_flags=self.tcp_flags if tcp else None,
            tcp_window=self.tcp_window if tcp else None,
            tcp_seq=self.tcp_seq if tcp else None,
            tcp_ack=self.tcp_ack if tcp else None,
            tcp_options=self.tcp_options,
            payload_len=len(self.payload),
            t_ms=round(t_ms, 1),
        )


def load() -> None:
    """Import scapy now: its first import takes seconds on a small machine, which must
    not be spent inside a probe's wait (the sniffer calls this before anything is sent)."""
    try:
        import scapy.layers.inet  # noqa: F401
    except ImportError:
        raise MissingScapy(
            "probe trace needs scapy: install reachprobe with the packets extra "
            "(pip install 'reachprobe[packets]')"
        ) from None


class MissingScapy(ProbeError):
    exit_status = ExitStatus.PRIVILEGE


def dissect(raw: bytes) -> Received | None:
    """``raw`` (an IPv4 packet, header included) or None if it is not one we can read."""
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None
    try:
        return _dissect(raw)
    except Exception:  # scapy raises many types on garbage; garbage is not our problem
        return None


def _dissect(raw: bytes) -> Received | None:
    from scapy.layers.inet import ICMP as ScapyICMP
    from scapy.layers.inet import IP
    from scapy.layers.inet import TCP as ScapyTCP
    from scapy.layers.inet import UDP as ScapyUDP

    ip = IP(raw)
    base = Received(
        src=str(ip.src),
        dst=str(ip.dst),
        proto=int(ip.proto),
        ip_ttl=int(ip.ttl),
        ip_id=int(ip.id),
        ip_df=bool(int(ip.flags) & 0x2),
    )
    if ip.frag or int(ip.flags) & 0x1:
        return None  # a fragment: the transport header may be elsewhere
    if ScapyTCP in ip and ip.proto == TCP:
        tcp = ip[ScapyTCP]
        return replace(
            base,
            sport=int(tcp.sport),
            dport=int(tcp.dport),
            tcp_flags=str(tcp.flags),
            tcp_seq=int(tcp.seq),
            tcp_ack=int(tcp.ack),
            tcp_window=int(tcp.window),
            tcp_options=tuple(_option(o) for o in tcp.options[:16]),
            payload=bytes(tcp.payload)[:MAX_PAYLOAD],
        )
    if ScapyUDP in ip and ip.proto == UDP:
        udp = ip[ScapyUDP]
        return replace(
            base,
            sport=int(udp.sport),
            dport=int(udp.dport),
            payload=bytes(udp.payload)[:MAX_PAYLOAD],
        )
    if ScapyICMP in ip and ip.proto == ICMP:
        icmp = ip[ScapyICMP]
        kind = int(icmp.type)
        quoted = (
            _quoted(bytes(icmp.payload)) if kind in (ICMP_TIME_EXCEEDED, ICMP_UNREACHABLE) else None
        )
        return replace(base, icmp_type=kind, icmp_code=int(icmp.code), quoted=quoted)
    return None


def flow_of(raw: bytes) -> Flow | None:
    """The flow (as we sent it) that ``raw`` answers, or that the ICMP error in ``raw``
    quotes; read by hand, so packets of other flows cost no dissection."""
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None
    ihl = (raw[0] & 0x0F) * 4
    if raw[9] == ICMP:
        if len(raw) < ihl + 8 or raw[ihl] not in (ICMP_TIME_EXCEEDED, ICMP_UNREACHABLE):
            return None
        return _quoted(raw[ihl + 8 :])
    answer = _transport(raw)
    if answer is None:
        return None
    proto, src, sport, dst, dport = answer
    return Flow(proto, dst, dport, src, sport)  # an answer: its source is where we sent


def _quoted(data: bytes) -> Flow | None:
    """The flow of the IP header + 8 transport bytes an ICMP error carries (RFC 792)."""
    sent = _transport(data)
    return None if sent is None else Flow(*sent)


def _transport(data: bytes) -> tuple[int, str, int, str, int] | None:
    """(protocol, source, source port, destination, destination port) of a TCP or UDP
    IPv4 header, read from its first bytes; None for anything else or too short."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    proto = data[9]
    if ihl < 20 or len(data) < ihl + 4 or proto not in (TCP, UDP):
        return None
    src = str(ipaddress.IPv4Address(data[12:16]))
    dst = str(ipaddress.IPv4Address(data[16:20]))
    sport = int.from_bytes(data[ihl : ihl + 2], "big")
    dport = int.from_bytes(data[ihl + 2 : ihl + 4], "big")
    return proto, src, sport, dst, dport


def _option(option: object) -> str:
    """A TCP option as text (``MSS=1460``, ``SAckOK``), bounded."""
    if isinstance(option, tuple) and option:
        name, value = option[0], option[1] if len(option) > 1 else None
        text = str(name) if value in (None, b"", ()) else f"{name}={value}"
        return text[:40]
    return str(option)[:40]
