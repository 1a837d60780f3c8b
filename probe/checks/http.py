"""HTTP GET to one pinned address, the way a browser would ask for the page.

The probe never lets the HTTP client resolve names: the request goes to an
address chosen by the caller (a vantage or a control DNS answer), while the
Host header and the TLS SNI carry the domain.  That separates the triggers a
censor can key on (IP, SNI, Host).  Requests look like a browser's (headers,
HTTP/1.1) because middleboxes may ignore requests that do not.

Redirects are followed by hand so that every hop is recorded and a redirect
to another host (often a blockpage or an ISP's notice) is reported, not
followed.  The whole fetch is bounded by one deadline and the body by a read
cap; a timeout while reading the body keeps what was read, because its rate
is the evidence of throttling.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import html
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h11

from probe import netaddr
from probe.checks import httpwire
from probe.checks.decode import BodyDecoder
from probe.checks.errors import failure_from_exception, forget_traceback
from probe.checks.tcp import Connection, open_connection
from probe.checks.timer import within
from probe.checks.url import DEFAULT_PORTS, URL
from probe.failures import Failure
from probe.observations import BODY_KEEP, BODY_READ_CAP, HTTPObservation, Redirect

log = logging.getLogger(__name__)

MAX_HEADERS = 64
MAX_HEADER_VALUE = 512
TITLE_SCAN = 64 * 1024  # the title is looked for in the first 64 KiB only
TITLE_MAX = 200

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_SIZE = 64 * 1024
MAX_HEAD = 100 * 1024  # one status line and its headers, as httpcore allows
HEAD_LIMIT = 256 * 1024
"""Bytes a server may send before its final response head ends (informational
responses included): a 1xx flood must not keep the check busy until the deadline."""
MAX_INTERIM = 16  # informational (1xx) responses accepted before the final one
_FAST_METHODS = frozenset({"GET", "POST"})  # others frame a response's body otherwise (HEAD)
HTTP_ALPN = ("http/1.1",)  # what a connection this module dials offers: it speaks HTTP/1.1 only

ContextSource = ssl.SSLContext | Callable[[], ssl.SSLContext]
"""A TLS context, or a function making it: called only if an https hop is dialled."""


# ------------------------------------------------------------ pure helpers


def extract_title(text: str) -> str | None:
    """The text of the first HTML ``<title>`` element, or None when there is none.

    Only the first :data:`TITLE_SCAN` characters are searched (scanned with
    ``str.find``, linear even on hostile input); entities are unescaped,
    whitespace collapsed and the result cut to :data:`TITLE_MAX` characters.
    """
    text = text[:TITLE_SCAN]
    lower = text.lower()
    start = 0
    while True:
        tag = lower.find("<title", start)
        if tag < 0:
            return None
        after = tag + len("<title")
        if after < len(lower) and (lower[after] == ">" or lower[after].isspace()):
            break
        start = after  # <titles>, <title-x>...: not the element
    opened = lower.find(">", after)
    if opened < 0:
        return None
    closed = lower.find("</title", opened)
    raw = text[opened + 1 : closed if closed >= 0 else len(text)]
    return " ".join(html.unescape(raw).split())[:TITLE_MAX]


def normalise_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """At most :data:`MAX_HEADERS` headers, names lowercased, values cut to
    :data:`MAX_HEADER_VALUE` characters: bounded storage whatever the server sends."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if len(out) >= MAX_HEADERS:
            break
        out.append((name.lower(), value[:MAX_HEADER_VALUE]))
    return tuple(out)


def body_charset(content_type: str | None) -> str:
    """The codec named by a Content-Type's charset parameter, else utf-8."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip("\"'")
            try:
                return codecs.lookup(name).name
            except LookupError:
                break
    return "utf-8"


# ----------------------------------------------------------- fetch state


@dataclass
class _Response:
    """What one hop received so far; kept live so a deadline or a reset
    mid-body still leaves the status, headers and partial body."""

    cap: int
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    charset: str = "utf-8"
    ttfb_ms: float | None = None
    length: int = 0
    head: bytearray = field(default_factory=bytearray)  # first TITLE_SCAN bytes
    digest: Any = field(default_factory=hashlib.sha256)
    first_byte: float | None = None
    last_byte: float | None = None
    capped: bool = False
    complete: bool = False  # the body was read to its end (or to the cap)

    def add(self, chunk: bytes) -> bool:
        """Record a decoded body chunk; True once the read cap is reached."""
        if not chunk:
            return False
        now = time.monotonic()
        if self.first_byte is None:
            self.first_byte = now
        self.last_byte = now
        chunk = chunk[: self.cap - self.length]
        self.length += len(chunk)
        self.digest.update(chunk)
        room = max(TITLE_SCAN, BODY_KEEP) - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        if self.length >= self.cap:
            self.capped = True
        return self.capped


@dataclass
class _Target:
    """One hop's request: the URL asked for, and where it really goes."""

    url: URL
    host: str  # Host header
    port: int
    server_name: str | None  # SNI, https only


# ------------------------------------------------------------------ fetch


async def fetch(
    url: str,
    *,
    address: str,
    host: str | None = None,
    server_name: str | None = None,
    context: ContextSource | None = None,
    timeout: float,
    t0: float,
    max_redirects: int = 5,
    read_cap: int = BODY_READ_CAP,
    ports: Mapping[str, int] | None = None,
    allow_loopback: bool = False,
    follow_https: bool = True,
    connection: Connection | None = None,
) -> HTTPObservation:
    """GET ``url`` from ``address`` (never resolved), following same-host redirects.

    ``follow_https=False`` stops at a redirect from http to https: the
    plaintext path is measured on its own, so an SNI block on the upgraded hop
    cannot be mistaken for Host filtering.

    ``host`` overrides the Host header and ``server_name`` the SNI (both
    default to the URL's host); ``context`` verifies the https hops this
    function dials (offering ``http/1.1`` only; a default verifying context
    when None).  ``connection``, when given, is an open connection to the
    first hop's endpoint (for https: already TLS with ``server_name``, as the
    TLS check left it): the first request goes over it, so the 5-tuple the
    other checks measured is the one HTTP measures too.  It is closed here;
    if it negotiated HTTP/2 (which this client does not speak) it is closed
    unused and the hop dialled anew.  ``ports`` maps a scheme to the port used
    when a URL has none.  Raises ValueError only for caller errors (a URL that
    is not http(s), an address that is not an IP literal); network behaviour
    always ends in an observation, within ``timeout`` seconds.
    """
    start = time.monotonic()
    ip = netaddr.parse(address)
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    parsed = URL.parse(url)
    if parsed is None:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port_map = {**DEFAULT_PORTS, **(ports or {})}
    first = _target(parsed, port_map, host=host, server_name=server_name)

    def observe(
        failure: Failure | None, response: _Response | None = None, **extra: Any
    ) -> HTTPObservation:
        return _observation(url, address, first, start, t0, failure, response, **extra)

    if connection is not None and not _speaks_http11(connection):
        await connection.close()
        connection = None
    if not netaddr.is_dialable(address, allow_loopback=allow_loopback):
        if connection is not None:
            await connection.close()
        return observe(Failure.ADDRESS_UNUSABLE)

    redirects: list[Redirect] = []
    response = _Response(cap=read_cap)
    failure: Failure | None = None
    deadline = start + timeout
    try:
        with within(timeout):
            target: _Target | None = first
            while target is not None:
                response = _Response(cap=read_cap)
                given, connection = connection, None
                reply = await _send(target, address, context, deadline, response, given)
                try:
                    current, target = target, None
                    location = reply.header("location")
                    if reply.status in _REDIRECT_STATUSES and location:
                        joined = current.url.join(location)
                        absolute = str(joined) if joined is not None else location
                        redirects.append(Redirect(reply.status, absolute))
                        upgrade = joined is not None and joined.scheme != current.url.scheme
                        if (
                            joined is not None
                            and _same_host(joined, current)
                            and (follow_https or not upgrade)
                        ):
                            if len(redirects) > max_redirects:
                                failure = Failure.HTTP_TOO_MANY_REDIRECTS
                            else:
                                target = _target(joined, port_map, server_name=server_name)
                    if target is None:  # the final answer: read its body
                        await _read_body(reply, response)
                finally:
                    await reply.connection.close()
    except TimeoutError as exc:
        failure = Failure.TIMEOUT
        forget_traceback(exc)
    except Exception as exc:  # network behaviour must become data, never an exception
        failure = failure_from_exception(exc)
        if failure is Failure.UNKNOWN_ERROR:
            log.warning("unexpected error fetching %s from %s", url, address, exc_info=exc)
        forget_traceback(exc)
    finally:
        if connection is not None:  # never used: the deadline passed before the first hop
            await connection.close()
    return observe(failure, response, redirects=tuple(redirects))


def _speaks_http11(connection: Connection) -> bool:
    sslobj = connection.writer.get_extra_info("ssl_object")
    alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
    return alpn in (None, "http/1.1")


def _target(
    url: URL,
    ports: Mapping[str, int],
    *,
    host: str | None = None,
    server_name: str | None = None,
) -> _Target:
    # An explicit port that is not the scheme's default is in the Host header, as browsers send it.
    port = url.port if url.port is not None else ports[url.scheme]
    sni = (server_name or url.host) if url.scheme == "https" else None
    return _Target(url=url, host=host or url.authority, port=port, server_name=sni)


def _same_host(url: URL, target: _Target) -> bool:
    """Does ``url`` name the host this hop asked for (the Host header's name)?"""
    asked = target.host.rsplit(":", 1)[0] if not target.host.endswith("]") else target.host
    asked = asked.strip("[]").lower().rstrip(".")
    return url.host.rstrip(".") == asked


def _headers(host: str) -> list[tuple[str, str]]:
    """A desktop Chrome's request headers, in its order."""
    return [
        ("Host", host),
        ("Connection", "keep-alive"),
        ("Upgrade-Insecure-Requests", "1"),
        ("User-Agent", USER_AGENT),
        ("Accept", _ACCEPT),
        ("Accept-Encoding", "gzip, deflate"),  # only what httpx always decodes
        ("Accept-Language", "en-US,en;q=0.9"),
    ]


@functools.lru_cache(maxsize=256)
def _request_head(
    method: str, target: str, headers: tuple[tuple[str, str], ...]
) -> tuple[h11.Request, bytes]:
    """A request head as an h11 event and the bytes h11 writes for it, made once:
    h11 checks every header with a regular expression, and a domain asks the
    same two heads seven times (an event is immutable, so sharing it is safe)."""
    event = h11.Request(method=method, target=target, headers=list(headers))
    return event, h11.Connection(h11.CLIENT).send(event) or b""


class Exchange:
    """One HTTP/1.1 request and response on a connection.

    A response of the common shape is read by :mod:`probe.checks.httpwire`;
    any other is given, from its first byte, to h11, made only then (a request
    with a body goes through h11 from the start, which checks its length).
    The response head is bounded (:data:`MAX_INTERIM` informational responses,
    :data:`HEAD_LIMIT` bytes); DoH uses it too, for the same limits."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.parser: h11.Connection | None = None
        self.received = 0
        self.closed = False  # the peer closed its side (an empty read)
        self._request: h11.Request | None = None
        self._fast = False  # the response is read by httpwire, not h11
        self._rest = b""  # body bytes read with the head (fast path)
        self._length: int | None = None  # the body's Content-Length (fast path)
        self._remaining: int | None = None  # of it still to come; None: until the close

    async def request(
        self,
        target: str,
        headers: list[tuple[str, str]],
        *,
        method: str = "GET",
        body: bytes = b"",
    ) -> float:
        """Send the request (``body`` needs its Content-Length header); the time it was sent."""
        self._request, data = _request_head(method, target, tuple(headers))
        self._fast = method in _FAST_METHODS
        if body:
            self.parser = parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
            data = b"".join(
                parser.send(event)
                for event in (self._request, h11.Data(data=body), h11.EndOfMessage())
            )
        self.conn.writer.write(data)
        await self.conn.writer.drain()
        return time.monotonic()

    def _h11(self) -> h11.Connection:
        """h11, told of the request already written (its bytes are not sent again)."""
        parser = self.parser
        if parser is None:
            assert self._request is not None, "no request sent"
            self.parser = parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
            parser.send(self._request)
            parser.send(h11.EndOfMessage())
        return parser

    async def response(self) -> _Reply:
        """The final response head, past at most :data:`MAX_INTERIM` informational
        ones and :data:`HEAD_LIMIT` bytes."""
        data = await self._read(head=True)
        head = httpwire.read_head(data) if self._fast else None
        if head is not None:
            self._rest = data[head.end :]
            self._length = self._remaining = head.length
            return _Reply(self, head.status, head.headers)
        self._fast = False
        self._h11().receive_data(data)  # not the common shape: h11 reads it all
        for _ in range(MAX_INTERIM + 1):
            event = await self.next_event(head=True)
            if isinstance(event, h11.Response):
                headers = [(name.decode("ascii"), _text(value)) for name, value in event.headers]
                return _Reply(self, event.status_code, headers)
            if not isinstance(event, h11.InformationalResponse):  # ConnectionClosed
                raise EOFError("server closed the connection without sending a response")
        raise h11.RemoteProtocolError(f"more than {MAX_INTERIM} informational responses")

    async def _read(self, *, head: bool = False) -> bytes:
        data = await self.conn.reader.read(READ_SIZE)
        self.closed = not data
        self.received += len(data)
        if head and self.received > HEAD_LIMIT:
            raise h11.RemoteProtocolError(f"response head not complete after {self.received} bytes")
        return data

    async def next_event(self, *, head: bool = False) -> Any:
        """The next HTTP event from h11, reading as needed.

        A peer that closes mid-message is an ``EOFError`` (Failure.EOF), whatever
        h11 calls it; anything else malformed stays an ``h11.RemoteProtocolError``.
        """
        parser = self._h11()
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                if self.closed:
                    raise EOFError(str(exc)) from exc
                raise
            if event is not h11.NEED_DATA:
                return event
            parser.receive_data(await self._read(head=head))

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as received; None once the message ended.
        The fast path gives the pieces h11 would: what came with the head, then
        each read, up to the Content-Length (or to the close without one)."""
        if not self._fast:
            while True:
                event = await self.next_event()
                if isinstance(event, h11.Data):
                    return bytes(event.data)
                if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return None
        remaining = self._remaining
        if remaining == 0 or (self.closed and remaining is None):
            return None
        data, self._rest = self._rest, b""
        if not data:
            data = await self._read()
            if not data:
                if remaining is None:
                    return None
                length = self._length or 0
                raise EOFError(  # h11's words, as next_event turns them into EOFError
                    "peer closed connection without sending complete message body "
                    f"(received {length - remaining} bytes, expected {length})"
                )
        if remaining is not None:
            data = data[:remaining]  # bytes after the body are not the body
            self._remaining = remaining - len(data)
        return data


class _Reply:
    """A response whose head was read; the body is read on demand."""

    def __init__(self, exchange: Exchange, status: int, headers: list[tuple[str, str]]) -> None:
        self._exchange = exchange
        self.connection = exchange.conn
        self.status = status
        self.headers = headers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (a lowercase name)."""
        return next((value for key, value in self.headers if key == name), None)

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as received (still content-coded); None once
        the message ended.  A plain coroutine rather than an async generator: the
        loop registers every async generator it starts (a weak set, in Python),
        and a list run reads a few bodies per domain."""
        return await self._exchange.next_chunk()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as received (still content-coded), until the message ends."""
        while (chunk := await self.next_chunk()) is not None:
            yield chunk


def _text(value: bytes) -> str:
    """A header value as text: UTF-8 when it is, else Latin-1 (as httpx decodes them)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


async def _dial(
    target: _Target, address: str, context: ContextSource | None, timeout: float
) -> Connection:
    """A new connection for one hop: TCP, and TLS with the hop's SNI for https
    (within :func:`fetch`'s deadline, which bounds the connect)."""
    from probe.checks import tls

    conn = await open_connection(address, target.port, None)
    if target.server_name is None:
        return conn
    if context is None:
        context = tls.make_context(alpn=HTTP_ALPN)
    elif not isinstance(context, ssl.SSLContext):
        context = context()
    try:
        await tls.start_tls(conn.writer, context, target.server_name, timeout)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _send(
    target: _Target,
    address: str,
    context: ContextSource | None,
    deadline: float,
    response: _Response,
    connection: Connection | None,
) -> _Reply:
    """Send one GET (over ``connection``, else a new one to ``address``), record
    the response head in ``response``, and return the reply; the caller closes
    its ``connection`` (closed here if no reply came)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        if connection is not None:
            await connection.close()
        raise TimeoutError
    conn = connection or await _dial(target, address, context, remaining)
    try:
        exchange = Exchange(conn)
        sent = await exchange.request(target.url.target, _headers(target.host))
        reply = await exchange.response()
        response.ttfb_ms = (time.monotonic() - sent) * 1000
        response.status = reply.status
        response.headers = normalise_headers(reply.headers)
        response.charset = body_charset(reply.header("content-type"))
    except BaseException:
        await conn.close()
        raise
    return reply


async def _read_body(reply: _Reply, response: _Response) -> None:
    """Read the body into ``response`` until its end or the read cap.

    The raw bytes are decoded here so that both what arrives and what it
    decodes to stop at the cap (see :mod:`probe.checks.decode`).
    """
    decoder = BodyDecoder(reply.header("content-encoding"), response.cap)
    received = 0
    while (raw := await reply.next_chunk()) is not None:
        received += len(raw)
        capped = response.add(decoder.decode(raw)) or decoder.capped
        if capped or received >= response.cap:
            response.capped = True
            break
        if decoder.finished:
            break
    response.complete = True


def _observation(
    url: str,
    address: str,
    first: _Target,
    start: float,
    t0: float,
    failure: Failure | None,
    response: _Response | None,
    **extra: Any,
) -> HTTPObservation:
    base: dict[str, Any] = {
        "url": url,
        "address": address,
        "port": first.port,
        "host": first.host,
        "server_name": first.server_name,
        "t_ms": (start - t0) * 1000,
        "elapsed_ms": (time.monotonic() - start) * 1000,
        "failure": failure,
        **extra,
    }
    if response is None or response.status is None:
        return HTTPObservation(**base)
    head = bytes(response.head)
    body_ms = None
    if response.first_byte is not None and response.last_byte is not None:
        body_ms = (response.last_byte - response.first_byte) * 1000
    return HTTPObservation(
        **base,
        status=response.status,
        headers=response.headers,
        title=extract_title(head[:TITLE_SCAN].decode(response.charset, errors="replace")),
        body=head[:BODY_KEEP].decode(response.charset, errors="replace"),
        body_length=response.length,
        body_sha256=response.digest.hexdigest() if response.length or response.complete else None,
        body_truncated=response.capped or not response.complete,
        ttfb_ms=response.ttfb_ms,
        body_ms=body_ms,
    )
