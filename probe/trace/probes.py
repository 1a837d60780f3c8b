"""TTL-limited probes on ordinary kernel sockets, watched through the :class:`Sniffer`.

Why kernel sockets: a connection scapy opened without one would be reset by
our own kernel at the server's first SYN-ACK. Here the kernel owns every
connection (the handshake is done at full TTL), ``IP_TTL`` is set on the
socket before the payload goes out, and the sniffer reads what comes back:
ICMP time exceeded quoting our segment (the router where it died), a RST
(with the IP TTL and ID that tell who sent it), or the server's answer.
Every socket is closed with SO_LINGER 0 (an immediate RST, no TIME_WAIT).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import time
from collections.abc import Callable, Sequence

from probe.trace.observations import Outcome, Packet, Probe
from probe.trace.sniffer import Sniffer
from probe.trace.wire import ICMP_TIME_EXCEEDED, ICMP_UNREACHABLE, TCP, Flow, Received

FULL_TTL = 64
MAX_KEPT_PACKETS = 8
_GRACE_S = 0.05  # after a time exceeded, how long to wait for a RST injected beside it
_SPLIT_PAUSE_S = 0.01
_MAX_BODY = 65536


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _flow(sock: socket.socket, address: str, port: int) -> Flow:
    host, local_port = sock.getsockname()[:2]
    return Flow(TCP, host, local_port, address, port)


def kind_of(r: Received, end: int | None = None) -> str:
    """What a packet kept for a flow is. ``end`` is the sequence number after our whole
    payload, when known: an ACK of all of it means the server got it ("ack"); an ACK of
    part of it (the first of a split ClientHello) decides nothing yet."""
    if r.icmp_type == ICMP_TIME_EXCEEDED:
        return "time-exceeded"
    if r.icmp_type is not None:
        return "unreachable" if r.icmp_type == ICMP_UNREACHABLE else f"icmp-{r.icmp_type}"
    if "R" in r.tcp_flags:
        return "reset"
    if "S" in r.tcp_flags and "A" in r.tcp_flags:
        return "syn-ack"
    if r.payload:
        return "data"
    if end is not None and "A" in r.tcp_flags and (r.tcp_ack - end) % 2**32 < 2**31:
        return "ack"
    return "other"


def judge(kinds: Sequence[tuple[str, str]]) -> tuple[Outcome, str | None]:
    """The outcome of one probe from the ``(kind, source)`` of what came back, in order.

    A RST wins over everything (a censor may inject one beside letting the packet
    on), then an answer of the destination, then the router's time exceeded."""
    for wanted, outcome in (
        (("reset",), "reset"),
        (("data", "ack", "syn-ack"), "reply"),
        (("time-exceeded",), "time-exceeded"),
        (("unreachable",), "unreachable"),
    ):
        for kind, source in kinds:
            if kind in wanted:
                return outcome, source  # type: ignore[return-value]
    return "silence", None


def _decided(kinds: list[str], since_te: float | None) -> bool:
    if any(k in ("reset", "data", "ack", "syn-ack", "unreachable") for k in kinds):
        return True
    return since_te is not None and time.monotonic() - since_te >= _GRACE_S


def _packets(
    kept: Sequence[tuple[float, Received]], sent: float, end: int | None
) -> tuple[Packet, ...]:
    return tuple(r.packet(kind_of(r, end), (t - sent) * 1000) for t, r in kept[:MAX_KEPT_PACKETS])


def path(address: str, port: int, max_ttl: int, wait: float, batch: int = 8) -> tuple[Probe, ...]:
    """A TCP traceroute: SYNs with TTL 1..``max_ttl`` (``batch`` at a time), until the
    destination answers. Bounded: ``ceil(max_ttl / batch)`` waits of ``wait`` at most."""
    probes: list[Probe] = []
    for first in range(1, max_ttl + 1, batch):
        ttls = range(first, min(first + batch, max_ttl + 1))
        probes += _syn_batch(address, port, ttls, wait)
        reached = [p for p in probes if p.responder == address and p.outcome != "time-exceeded"]
        if reached:
            return tuple(p for p in probes if p.ttl <= reached[0].ttl)
    return tuple(probes)


def _syn_batch(address: str, port: int, ttls: Sequence[int], wait: float) -> list[Probe]:
    socks: dict[int, socket.socket] = {}
    flows: dict[int, Flow] = {}
    errors: dict[int, str] = {}
    with Sniffer() as sniffer:
        try:
            for ttl in ttls:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks[ttl] = sock
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                code = sock.connect_ex((address, port))
                if code not in (0, errno.EINPROGRESS):
                    errors[ttl] = errno.errorcode.get(code, str(code))
                    continue
                flows[ttl] = _flow(sock, address, port)
            sent = time.monotonic()
            by_flow = {f: t for t, f in flows.items()}

            def done(kept: list[tuple[float, Received]]) -> bool:
                answered = {
                    by_flow.get(r.quoted) if r.quoted else _peer(r, by_flow) for _, r in kept
                }
                return answered >= set(flows)

            kept = sniffer.collect(list(flows.values()), sent + wait, done, limit=4 * len(ttls))
        finally:
            for sock in socks.values():
                _close(sock)
    probes = []
    for ttl in ttls:
        if ttl in errors:
            probes.append(Probe(ttl, "error", detail=errors[ttl]))
            continue
        flow = flows[ttl]
        mine = [
            (t, r) for t, r in kept if r.quoted == flow or (r.quoted is None and r.answers(flow))
        ]
        outcome, responder = judge([(kind_of(r), r.src) for _, r in mine])
        rtt = (mine[0][0] - sent) * 1000 if mine else None
        probes.append(
            Probe(
                ttl,
                outcome,
                responder,
                None if rtt is None else round(rtt, 1),
                _packets(mine, sent, None),
            )
        )
    return probes


def _peer(r: Received, by_flow: dict[Flow, int]) -> int | None:
    return by_flow.get(Flow(r.proto, r.dst, r.dport, r.src, r.sport))


def payload(
    address: str,
    port: int,
    ttl: int,
    parts: Sequence[bytes],
    wait: float,
    body_check: Callable[[bytes], str | None] | None = None,
) -> Probe:
    """Connect at full TTL, then send ``parts`` (one segment each) with IP TTL ``ttl``.

    ``body_check`` reads what the server sent (HTTP) and names a blockpage, if it is one.
    """
    with Sniffer() as sniffer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(wait)
            try:
                sock.connect((address, port))
            except OSError as exc:
                return Probe(ttl, "error", detail=f"connect: {_reason(exc)}")
            flow = _flow(sock, address, port)
            handshake = sniffer.collect([flow], time.monotonic() + 0.2, lambda k: bool(k), limit=4)
            synack = next((r for _, r in handshake if kind_of(r) == "syn-ack"), None)
            # our payload ends here: the SYN-ACK acknowledges our ISN + 1
            end = None if synack is None else (synack.tcp_ack + sum(map(len, parts))) % 2**32
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            sent = time.monotonic()
            try:
                for i, part in enumerate(parts):
                    if i:
                        time.sleep(_SPLIT_PAUSE_S)
                    sock.sendall(part)
            except OSError as exc:
                return Probe(ttl, "error", detail=f"send: {_reason(exc)}")
            te_at: list[float] = []

            def done(kept: list[tuple[float, Received]]) -> bool:
                kinds = [kind_of(r, end) for _, r in kept]
                if "time-exceeded" in kinds and not te_at:
                    te_at.append(time.monotonic())
                return _decided(kinds, te_at[0] if te_at else None)

            kept = sniffer.collect([flow], sent + wait, done, limit=32)
            body = _read(sock) if body_check is not None else b""
        finally:
            _close(sock)
    outcome, responder = judge([(kind_of(r, end), r.src) for _, r in kept])
    detail = None
    if outcome == "reply" and body_check is not None:
        detail = body_check(body)
        if detail is not None:
            outcome = "blockpage"
    first = kept[0][0] if kept else None
    packets = ((synack.packet("syn-ack", 0.0),) if synack else ()) + _packets(kept, sent, end)
    return Probe(
        ttl,
        outcome,
        responder,
        None if first is None else round((first - sent) * 1000, 1),
        packets[:MAX_KEPT_PACKETS],
        detail,
    )


def _read(sock: socket.socket) -> bytes:
    """What the server sent so far (bounded), without waiting."""
    sock.setblocking(False)
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_BODY:
        try:
            chunk = sock.recv(_MAX_BODY - size)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__).lower()
