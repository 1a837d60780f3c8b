"""Plain DNS over UDP, recording every reply so that on-path injection shows.

A censor that injects DNS answers races the real resolver: its forged reply
arrives first and the genuine one a little later.  A stub resolver takes the
first reply and closes the socket; this check keeps listening for a short
window after the first valid reply and records every further reply to the
same query (OONI does the same).  Deciding whether differing replies mean
injection is the classifier's job; this module only records facts.

The message -> :class:`DNSReply` conversion and the reply -> :class:`Failure`
mapping live here and are shared with DoH (:mod:`probe.checks.doh`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import socket
import struct
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from probe.checks import dnswire
from probe.checks.errors import failure_from_exception
from probe.checks.timer import within
from probe.errors import UsageError
from probe.failures import Failure
from probe.netaddr import endpoint_label
from probe.observations import DNSQuery, DNSRecord, DNSReply, Origin

if TYPE_CHECKING:
    import dns.message
    import dns.name

DEFAULT_DOH: tuple[str, ...] = ("https://1.1.1.1/dns-query", "https://8.8.8.8/dns-query")

MAX_REPLIES = 16  # replies recorded per query: bounds memory under a reply flood

_RECORD_TYPES = {1: "A", 28: "AAAA", 5: "CNAME"}  # dnspython's rdatatype values
_IN = 1  # dnspython's rdataclass.IN
_RCODE_FAILURES = {
    "NXDOMAIN": Failure.DNS_NXDOMAIN,
    "SERVFAIL": Failure.DNS_SERVFAIL,
    "REFUSED": Failure.DNS_REFUSED,
}


# ------------------------------------------------------------------- resolvers


@dataclass(frozen=True)
class Resolver:
    """Where to send queries: a plain-DNS server or a DoH URL."""

    scheme: Literal["udp", "https"]
    host: str  # IP literal for udp; host of the URL for https
    port: int
    url: str | None = None  # full DoH URL for https
    system: bool = False  # came from /etc/resolv.conf

    @property
    def label(self) -> str:
        """How observations name this resolver (``DNSQuery.resolver``)."""
        if self.scheme == "https" and self.url is not None:
            text = self.url
        else:
            text = f"{self.scheme}://{endpoint_label(self.host, self.port)}"
        return f"system:{text}" if self.system else text


def parse_resolver(text: str) -> Resolver:
    """Parse ``IP``, ``IP:PORT``, ``[V6]:PORT``, ``V6`` or an ``https://`` DoH URL.

    A DoH URL without a path gets ``/dns-query`` (the path RFC 8484 servers use).
    """
    value = text.strip()
    resolver = _parse_doh(value) if value.lower().startswith("https://") else _parse_udp(value)
    if resolver is None:
        raise UsageError(f"invalid resolver {text!r}: expected IP[:PORT] or an https:// DoH URL")
    return resolver


def _parse_udp(value: str) -> Resolver | None:
    host, port_text = value, "53"
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or ":" not in inside or (rest and not rest.startswith(":")):
            return None
        host, port_text = inside, rest[1:] if rest else "53"
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    address = _ip_literal(host)
    port = _port(port_text)
    if address is None or port is None:
        return None
    return Resolver("udp", address, port)


def _parse_doh(value: str) -> Resolver | None:
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port or 443
    except ValueError:
        return None
    host = parts.hostname
    if not host or parts.username or parts.password or any(c.isspace() for c in value):
        return None
    path = parts.path or "/dns-query"
    url = urllib.parse.urlunsplit(("https", parts.netloc, path, parts.query, ""))
    return Resolver("https", host.strip("[]"), port, url=url)


def _ip_literal(host: str) -> str | None:
    """The canonical text of an IP literal (IPv6 scope ids kept), else None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _port(text: str) -> int | None:
    if not text.isdecimal():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def system_resolver(path: str = "/etc/resolv.conf") -> Resolver:
    """The first usable ``nameserver`` of resolv.conf, tagged as the system resolver."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            address = _ip_literal(fields[1])
            if address is not None:
                return Resolver("udp", address, 53, system=True)
    raise UsageError(f"no system resolver in {path}; pass --resolver IP[:PORT]")


# ------------------------------------------------------- message -> observation
#
# Queries are built, and replies of the common shape read, by
# :mod:`probe.checks.dnswire`; dnspython (imported here only when needed: it
# is a seventh of a one-off check's CPU to import) builds the queries that
# module declines and reads the replies it declines.


def dns_name(name: dns.name.Name) -> str:
    """A name as observations store it: lowercase, without the trailing dot."""
    return name.to_text(omit_final_dot=True).lower()


def _answer(message: dns.message.Message) -> tuple[str, tuple[DNSRecord, ...]]:
    """The rcode and the answer's A, AAAA and CNAME records, in wire order."""
    import dns.rcode

    records: list[DNSRecord] = []
    for rrset in message.answer:
        rtype = _RECORD_TYPES.get(rrset.rdtype)
        if rtype is None or rrset.rdclass != _IN:
            continue
        owner = dns_name(rrset.name)
        for rdata in rrset:
            if rtype == "CNAME":
                value = dns_name(rdata.target)
            else:
                value = _ip_literal(rdata.address) or rdata.address
            records.append(DNSRecord(rtype, owner, value, rrset.ttl))
    return dns.rcode.to_text(message.rcode()), tuple(records)


def reply_failure(reply: DNSReply, qname: str, qtype: str) -> Failure | None:
    """Name what a stub resolver would have made of ``reply``.

    NOERROR counts as an answer only when a ``qtype`` record sits at the end
    of the CNAME chain that starts at ``qname``.
    """
    if reply.rcode != "NOERROR":
        return _RCODE_FAILURES.get(reply.rcode, Failure.DNS_OTHER_RCODE)
    name = qname.rstrip(".").lower()
    cnames = {r.name: r.value for r in reply.records if r.rtype == "CNAME"}
    seen = {name}
    while name in cnames and cnames[name] not in seen:
        name = cnames[name]
        seen.add(name)
    if any(r.rtype == qtype.upper() and r.name == name for r in reply.records):
        return None
    return Failure.DNS_NO_ANSWER


def _parse(wire: bytes) -> dns.message.Message | None:
    """``wire`` as a DNS message (dnspython), None when it is not one."""
    import dns.exception
    import dns.message

    try:
        return dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError, KeyError, IndexError, UnicodeError):
        return None


@dataclass(frozen=True)
class _Question:
    """A query built once per name and type (the vantage and control resolvers are
    asked the same questions), with id 0."""

    wire: bytes
    labels: tuple[bytes, ...]  # the name, lowercase, as :mod:`probe.checks.dnswire` compares it
    rdtype: int


@functools.lru_cache(maxsize=64)
def _question(qname: str, qtype: str) -> _Question:
    """A recursive query with EDNS0 (dnspython's ``make_query(..., use_edns=0)``):
    by :mod:`probe.checks.dnswire` for a plain name, else by dnspython (which
    also raises for a name or type that cannot be asked)."""
    built = dnswire.make_query(qname, qtype)
    if built is not None:
        return _Question(*built)
    import dns.message

    message = dns.message.make_query(qname, qtype, use_edns=0)
    message.id = 0
    asked = message.question[0]
    labels = tuple(label.lower() for label in asked.name.labels if label)
    return _Question(message.to_wire(), labels, int(asked.rdtype))


@dataclass(frozen=True)
class Asked:
    """One query as sent: an id on the question's cached wire form."""

    question: _Question
    id: int
    wire: bytes

    @classmethod
    def new(cls, qname: str, qtype: str, qid: int | None = None) -> Asked:
        """``qid`` defaults to a random one (DoH asks with 0, as RFC 8484 advises)."""
        question = _question(qname, qtype)
        if qid is None:
            qid = int.from_bytes(os.urandom(2), "big")
        return cls(question, qid, struct.pack("!H", qid) + question.wire[2:])

    def read(self, wire: bytes) -> tuple[bool, str, tuple[DNSRecord, ...]] | None:
        """``wire`` as a reply to this query: (truncated, rcode, answer records),
        None when it is not one.  The common shape is read by
        :mod:`probe.checks.dnswire`; whatever it declines, by dnspython."""
        plain = dnswire.read_reply(wire, self.id, self.question.labels, self.question.rdtype)
        if plain is not None:
            return False, *plain
        message = self.reply(wire)
        if message is None:
            return None
        return bool(message.flags & dnswire.TC), *_answer(message)

    def reply(self, wire: bytes) -> dns.message.Message | None:
        """``wire`` as a reply to this query (dnspython's ``is_response``), else None."""
        message = _parse(wire)
        if message is None or message.id != self.id:
            return None
        query = _parse(self.wire)
        assert query is not None  # a query built above
        return message if query.is_response(message) else None


def ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


# ------------------------------------------------------------------- queries


async def query(
    resolver: Resolver,
    qname: str,
    qtype: str,
    *,
    origin: Origin,
    timeout: float,
    t0: float,
    window: float = 0.3,
    ca_bundle: str | None = None,
    answered: Callable[[DNSQuery], None] | None = None,
) -> DNSQuery:
    """Ask ``resolver`` for ``qname``/``qtype``; never raises for network behaviour.

    ``window`` (UDP only) is how long to keep listening for further replies
    after the first valid one; it never extends the query past ``timeout``.
    ``answered`` is called once the first reply is settled, with the query as
    a stub resolver would leave it (its addresses are final; only later
    replies may still be added), so the caller need not wait for the window
    to dial; when the query fails or has no window it may not be called.
    """
    if resolver.scheme == "https":
        from probe.checks.doh import query_doh

        return await query_doh(
            resolver, qname, qtype, origin=origin, timeout=timeout, t0=t0, ca_bundle=ca_bundle
        )
    return await _query_udp(
        resolver, qname, qtype, origin=origin, timeout=timeout, t0=t0, window=window,
        answered=answered,
    )  # fmt: skip


class _Listener(asyncio.DatagramProtocol):
    """Collects the valid replies to one query and counts the rest."""

    def __init__(self, query: Asked, start: float) -> None:
        self.query = query
        self.start = start
        self.replies: list[tuple[bool, DNSReply]] = []  # (truncated, reply)
        self.bad_packets = 0
        self.error: Exception | None = None
        # Done once a valid reply or a transport error arrived (a bare future: an
        # Event would add a waiter future and a little Python to every query).
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        read = self.query.read(data)
        if read is None:
            self.bad_packets += 1
            return
        if len(self.replies) < MAX_REPLIES:
            truncated, rcode, records = read
            source = endpoint_label(str(addr[0]), int(addr[1]))
            reply = DNSReply(rcode, records, ms_since(self.start), source)
            self.replies.append((truncated, reply))
        self._arrived()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable...) on the connected socket land here.
        if not self.replies and self.error is None:
            self.error = exc
        self._arrived()

    def _arrived(self) -> None:
        if not self.first.done():  # cancelled when the query timed out
            self.first.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.error_received(exc)


async def _query_udp(
    resolver: Resolver,
    qname: str,
    qtype: str,
    *,
    origin: Origin,
    timeout: float,
    t0: float,
    window: float,
    answered: Callable[[DNSQuery], None] | None = None,
) -> DNSQuery:
    """One UDP query, plus every further reply within ``window``.

    When the first valid reply has TC set, the question is asked again over
    TCP (within the remaining timeout) and the TCP reply replaces it as the
    first reply; the UDP socket keeps listening meanwhile.  If that TCP query
    fails, the truncated reply stays on record and the failure is the TCP one.
    """
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    deadline = start + timeout
    message = Asked.new(qname, qtype)

    def result(
        failure: Failure | None, replies: tuple[DNSReply, ...] = (), elapsed: float | None = None
    ) -> DNSQuery:
        """``elapsed`` defaults to the first reply's, else to now (a failure)."""
        if elapsed is None:
            elapsed = replies[0].elapsed_ms if replies else ms_since(start)
        return DNSQuery(
            resolver=resolver.label,
            origin=origin,
            qname=qname,
            qtype=qtype,
            t_ms=round((start - t0) * 1000, 3),
            elapsed_ms=elapsed,
            failure=failure,
            replies=replies,
        )

    listener = _Listener(message, start)
    transport: asyncio.DatagramTransport | None = None
    tcp_reply: DNSReply | Failure | None = None
    tcp_elapsed = 0.0
    told: tuple[int, DNSQuery] | None = None  # (replies then, the query) given to ``answered``

    def settled() -> DNSQuery:
        """The query with the replies received so far (the first one settled)."""
        udp_replies = tuple(reply for _, reply in listener.replies)
        if isinstance(tcp_reply, DNSReply):
            replies = (tcp_reply, *udp_replies[1:])
            return result(reply_failure(tcp_reply, qname, qtype), replies)
        if isinstance(tcp_reply, Failure):
            return result(tcp_reply, udp_replies, tcp_elapsed)
        return result(reply_failure(udp_replies[0], qname, qtype), udp_replies)

    try:
        try:
            with within(timeout):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: listener, sock=_udp_socket(resolver.host, resolver.port)
                )
                transport.sendto(message.wire)
                await listener.first
        except TimeoutError:
            pass
        except Exception as exc:  # socket creation/connect errors
            return result(failure_from_exception(exc))

        if not listener.replies:
            if listener.error is not None:
                return result(failure_from_exception(listener.error))
            return result(Failure.DNS_BAD_REPLY if listener.bad_packets else Failure.TIMEOUT)

        truncated, first_reply = listener.replies[0]
        listen_until = min(start + first_reply.elapsed_ms / 1000 + window, deadline)
        if truncated:
            tcp_reply = await _query_tcp(resolver, message, start, deadline - time.monotonic())
            tcp_elapsed = ms_since(start)
        if answered is not None:
            told = len(listener.replies), settled()
            answered(told[1])
        await asyncio.sleep(max(0.0, listen_until - time.monotonic()))
    finally:
        if transport is not None:
            transport.close()
    if told is not None and told[0] == len(listener.replies):
        return told[1]  # nothing arrived in the window (the usual case): the same query
    return settled()


def _udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to ``host`` (an IP literal), ``port``.

    Made here rather than by ``create_datagram_endpoint(remote_addr=...)``:
    uvloop resolves a remote address through libuv's thread pool even when it
    is an IP literal (a round trip through another thread for every query);
    connecting a UDP socket sends nothing and fails only as the loop would."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _query_tcp(
    resolver: Resolver, message: Asked, start: float, budget: float
) -> DNSReply | Failure:
    """Ask ``message`` over TCP (RFC 7766 two-byte length framing) within ``budget`` s."""
    writer: asyncio.StreamWriter | None = None
    try:
        with within(budget):
            reader, writer = await asyncio.open_connection(resolver.host, resolver.port)
            writer.write(struct.pack("!H", len(message.wire)) + message.wire)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            read = message.read(await reader.readexactly(length))
    except Exception as exc:
        return failure_from_exception(exc)
    finally:
        if writer is not None:
            writer.close()
    if read is None:
        return Failure.DNS_BAD_REPLY
    source = endpoint_label(resolver.host, resolver.port)
    return DNSReply(read[1], read[2], ms_since(start), source)
