"""An in-process loopback DNS server with scripted, per-name behaviours.

Tests (DNS checks, the orchestrator, the CLI) need resolvers that misbehave
in precise ways: forged replies that race the real one, garbage, wrong ids,
truncation.  A behaviour is a tuple of *steps*, each one packet sent after
its own delay from the query's arrival; ``()`` means never reply::

    server = DNSServer({
        "x.com": answer("104.244.42.1", "2606:1f80:f000::1", cnames=("twitter.map.test",)),
        "blocked.test": injected(spoofed=["10.0.0.1"], real=["198.51.100.7"], gap=0.05),
        "gone.test": NXDOMAIN,
    })
    async with server:                      # same event loop as the test
        resolver = parse_resolver(server.spec)  # "127.0.0.1:PORT"
    with serve_in_thread({...}) as server:  # own loop in a thread, for code using asyncio.run
        ...

Address records are chosen by the queried type: A gets the IPv4 addresses of
the step, AAAA the IPv6 ones (none -> NOERROR with an empty answer).  The
server listens on UDP and, unless ``tcp=False``, TCP on the same port; over
TCP it sends the behaviour's first :class:`Answer` in full (so ``truncated``
answers exercise the TC fallback).  Names are matched lowercase without the
trailing dot; unknown names get ``default``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@dataclass(frozen=True)
class Answer:
    """A reply: ``rcode``, an optional CNAME chain from the qname, then addresses."""

    addresses: tuple[str, ...] = ()
    cnames: tuple[str, ...] = ()
    rcode: str = "NOERROR"
    ttl: int = 300
    delay: float = 0.0
    truncated: bool = False  # over UDP: TC=1 and no records; over TCP: the full answer
    tcp_delay: float = 0.0  # extra wait before answering over TCP


@dataclass(frozen=True)
class Garbage:
    """Bytes that do not parse as DNS."""

    data: bytes = b"\x13\x37 this is not a DNS message"
    delay: float = 0.0


@dataclass(frozen=True)
class WrongId:
    """``answer`` sent with a query id that does not match."""

    answer: Answer = field(default_factory=Answer)


@dataclass(frozen=True)
class WrongQuestion:
    """``answer`` with the right id but a question for another name."""

    answer: Answer = field(default_factory=Answer)


@dataclass(frozen=True)
class Mangled:
    """A reply to the query (right id and question) that is malformed on purpose:
    ``pointer_loop`` (an answer name that points at itself), ``huge_counts`` (the
    header claims 65535 records per section), ``cut`` (ends inside a record)."""

    kind: str
    delay: float = 0.0


Step = Answer | Garbage | WrongId | WrongQuestion | Mangled
Behaviour = tuple[Step, ...]

SILENT: Behaviour = ()
NXDOMAIN: Behaviour = (Answer(rcode="NXDOMAIN"),)
SERVFAIL: Behaviour = (Answer(rcode="SERVFAIL"),)
REFUSED: Behaviour = (Answer(rcode="REFUSED"),)
NO_ANSWER: Behaviour = (Answer(),)  # NOERROR with an empty answer section


def answer(
    *addresses: str, cnames: Sequence[str] = (), ttl: int = 300, delay: float = 0.0
) -> Behaviour:
    return (Answer(tuple(addresses), tuple(cnames), ttl=ttl, delay=delay),)


def injected(spoofed: Sequence[str], real: Sequence[str], gap: float = 0.05) -> Behaviour:
    """A forged reply at once, then the genuine one ``gap`` seconds later."""
    return (Answer(tuple(spoofed)), Answer(tuple(real), delay=gap))


def build_reply(query: dns.message.Message, step: Answer, *, udp: bool = True) -> bytes:
    """The wire reply ``step`` makes to ``query`` (shared with the DoH test server)."""
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.from_text(step.rcode))
    if step.truncated and udp:
        reply.flags |= dns.flags.TC
        return reply.to_wire()
    question = query.question[0]
    owner = question.name
    for target in step.cnames:
        name = dns.name.from_text(target)
        _add(reply, owner, dns.rdatatype.CNAME, step.ttl, [name.to_text()])
        owner = name
    version = 6 if question.rdtype == dns.rdatatype.AAAA else 4
    if question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        matching = [a for a in step.addresses if ipaddress.ip_address(a).version == version]
        if matching:
            _add(reply, owner, question.rdtype, step.ttl, matching)
    return reply.to_wire()


def _add(
    reply: dns.message.Message,
    owner: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    ttl: int,
    values: list[str],
) -> None:
    rrset = dns.rrset.from_text_list(owner, ttl, dns.rdataclass.IN, rdtype, values)
    reply.answer.append(rrset)


def mangled_wire(query: dns.message.Message, kind: str) -> bytes:
    reply = build_reply(query, Answer(("198.51.100.7",)))
    if kind == "cut":
        return reply[:-3]
    if kind == "huge_counts":
        return reply[:4] + struct.pack("!HHHH", 1, 0xFFFF, 0xFFFF, 0xFFFF) + reply[12:]
    question = query.to_wire()[12:]
    start = 12 + len(question)  # the answer's name is a pointer to itself
    header = struct.pack("!HHHHHH", query.id, 0x8180, 1, 1, 0, 0)
    answer = struct.pack("!HHHIH", 0xC000 | start, 1, 1, 300, 4) + bytes((198, 51, 100, 7))
    return header + question + answer


def step_wire(query: dns.message.Message, step: Step) -> bytes:
    if isinstance(step, Garbage):
        return step.data
    if isinstance(step, Mangled):
        return mangled_wire(query, step.kind)
    if isinstance(step, Answer):
        return build_reply(query, step)
    if isinstance(step, WrongId):
        wire = bytearray(build_reply(query, step.answer))
        struct.pack_into("!H", wire, 0, (query.id + 1) & 0xFFFF)
        return bytes(wire)
    other = dns.message.make_query("wrong-question.test", query.question[0].rdtype)
    other.id = query.id
    return build_reply(other, step.answer)


def step_delay(step: Step) -> float:
    return step.answer.delay if isinstance(step, WrongId | WrongQuestion) else step.delay


@dataclass(frozen=True)
class SeenQuery:
    transport: str  # "udp" or "tcp"
    qname: str
    qtype: str
    id: int = field(default=0, compare=False)  # the message id (tests compare the rest)


def _key(name: str) -> str:
    return name.rstrip(".").lower()


class DNSServer:
    """UDP (+TCP) DNS server on ``host`` with an ephemeral port; see the module docstring."""

    def __init__(
        self,
        behaviours: Mapping[str, Behaviour] | None = None,
        *,
        default: Behaviour = NXDOMAIN,
        tcp: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.behaviours = {_key(k): v for k, v in (behaviours or {}).items()}
        self.default = default
        self.host = host
        self.port = 0
        self.queries: list[SeenQuery] = []  # every query received, in order
        self._want_tcp = tcp
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def spec(self) -> str:
        """The ``--resolver`` text for this server."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set(self, name: str, behaviour: Behaviour) -> None:
        self.behaviours[_key(name)] = behaviour

    def behaviour(self, qname: str) -> Behaviour:
        return self.behaviours.get(_key(qname), self.default)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # the UDP port may be taken for TCP: try another
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UDPHandler(self), local_addr=(self.host, 0)
            )
            self.port = self._udp.get_extra_info("sockname")[1]
            if not self._want_tcp:
                return
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                self._udp.close()
        raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def __aenter__(self) -> DNSServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _record(self, transport: str, query: dns.message.Message) -> None:
        question = query.question[0]
        qtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append(SeenQuery(transport, _key(question.name.to_text()), qtype, query.id))

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        if not query.question or self._udp is None:
            return
        self._record("udp", query)
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled()]
        for step in self.behaviour(query.question[0].name.to_text()):
            timer = loop.call_later(step_delay(step), self._send, step_wire(query, step), addr)
            self._timers.append(timer)

    def _send(self, wire: bytes, addr: tuple[str | int, ...]) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(wire, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                query = dns.message.from_wire(await reader.readexactly(length))
                self._record("tcp", query)
                steps = self.behaviour(query.question[0].name.to_text())
                first = next((s for s in steps if isinstance(s, Answer)), None)
                if first is None:
                    break
                await asyncio.sleep(first.delay + first.tcp_delay)
                wire = build_reply(query, first, udp=False)
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except Exception:  # the client went away or sent junk
            pass
        finally:
            writer.close()


class _UDPHandler(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.server._on_datagram(data, addr)


@contextlib.contextmanager
def serve_in_thread(
    behaviours: Mapping[str, Behaviour] | None = None,
    *,
    default: Behaviour = NXDOMAIN,
    tcp: bool = True,
    host: str = "127.0.0.1",
) -> Iterator[DNSServer]:
    """Run a :class:`DNSServer` on its own event loop in a daemon thread.

    For tests whose code under test calls ``asyncio.run`` itself.  ``set`` may
    be called from the test thread while the server runs.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dnsserver", daemon=True)
    thread.start()
    server = DNSServer(behaviours, default=default, tcp=tcp, host=host)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=5)
        yield server
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    """A port nobody listens on (for ICMP port-unreachable / RST tests)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
