"""TTL-limited DNS queries: a reply to a query that died before the resolver was forged.

All queries of a trace (target and control name, TTL 1..N and one unlimited
each) leave at once on their own UDP sockets and are watched together for one
``wait``: the time is bounded by the wait, whatever the path length. A query
the resolver never saw can only be answered by a box on the path; with the
control name's queries dying at the same routers, the first TTL answered for
the target names the injector's hop.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence

import dns.exception
import dns.message
import dns.rdatatype

from probe.trace.observations import Probe, Series
from probe.trace.probes import FULL_TTL, MAX_KEPT_PACKETS, judge
from probe.trace.sniffer import Sniffer
from probe.trace.wire import ICMP_TIME_EXCEEDED, ICMP_UNREACHABLE, UDP, Flow, Received

MAX_REPLIES = 4  # per query: an injector may send several; the rest is noise


def series(
    resolver: tuple[str, int], names: Sequence[tuple[str, bool]], max_ttl: int, wait: float
) -> tuple[tuple[Series, ...], tuple[Series, ...]]:
    """(the unlimited queries, the TTL-limited series) for each ``(qname, is_control)``."""
    ttls = [*range(1, max_ttl + 1), FULL_TTL]
    plan: list[tuple[str, int, socket.socket, Flow, dns.message.Message]] = []
    with Sniffer() as sniffer:
        try:
            for name, _ in names:
                for ttl in ttls:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                    query = dns.message.make_query(name, "A")
                    try:
                        sock.connect(resolver)
                        local, port = sock.getsockname()[:2]
                        flow = Flow(UDP, local, port, resolver[0], resolver[1])
                        sock.send(query.to_wire())
                    except OSError:
                        sock.close()
                        continue
                    plan.append((name, ttl, sock, flow, query))
            sent = time.monotonic()
            kept = sniffer.collect([p[3] for p in plan], sent + wait, limit=len(plan) * MAX_REPLIES)
        finally:
            for *_, sock, _, _ in plan:
                sock.close()
    full: list[Series] = []
    limited: list[Series] = []
    for name, control in names:
        probes = [
            _probe(ttl, flow, query, kept, sent) for n, ttl, _, flow, query in plan if n == name
        ]
        full.append(Series("dns", name, control, tuple(p for p in probes if p.ttl == FULL_TTL)))
        limited.append(Series("dns", name, control, tuple(p for p in probes if p.ttl < FULL_TTL)))
    return tuple(full), tuple(limited)


def _probe(
    ttl: int,
    flow: Flow,
    query: dns.message.Message,
    kept: list[tuple[float, Received]],
    sent: float,
) -> Probe:
    mine = [(t, r) for t, r in kept if r.quoted == flow or (r.quoted is None and r.answers(flow))]
    answers: list[tuple[str, ...]] = []
    events: list[tuple[str, str]] = []
    packets = []
    for t, r in mine:
        if r.icmp_type is not None:
            kind = (
                "time-exceeded"
                if r.icmp_type == ICMP_TIME_EXCEEDED
                else ("unreachable" if r.icmp_type == ICMP_UNREACHABLE else f"icmp-{r.icmp_type}")
            )
        else:
            addresses = _answer(query, r.payload)
            if addresses is None or len(answers) >= MAX_REPLIES:
                continue  # not a reply to this query (wrong id or question, or garbage)
            answers.append(addresses)
            kind = "data"
        events.append((kind, r.src))
        packets.append(r.packet("dns-reply" if kind == "data" else kind, (t - sent) * 1000))
    outcome, responder = judge(events)
    first = next((t for t, _ in mine), None)
    return Probe(
        ttl,
        outcome,
        responder,
        None if first is None else round((first - sent) * 1000, 1),
        tuple(packets[:MAX_KEPT_PACKETS]),
        answers=tuple(answers),
    )


def _answer(query: dns.message.Message, payload: bytes) -> tuple[str, ...] | None:
    """The sorted A addresses of a reply to ``query``, or None if it is not one."""
    with contextlib.suppress(dns.exception.DNSException, ValueError, UnicodeError):
        reply = dns.message.from_wire(payload)
        if query.is_response(reply):
            return tuple(
                sorted(
                    str(r.address)
                    for rrset in reply.answer
                    if rrset.rdtype == dns.rdatatype.A
                    for r in rrset
                )
            )
    return None
