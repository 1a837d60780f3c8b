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

import asyncio
import codecs
import contextlib
import hashlib
import html
import logging
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe import netaddr
from probe.checks.decode import BodyDecoder
from probe.checks.errors import failure_from_exception
from probe.failures import Failure
from probe.observations import BODY_KEEP, BODY_READ_CAP, HTTPObservation, Redirect

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443}
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
HEAD_LIMIT = 256 * 1024
"""Bytes a server may send before its final response head ends (informational
responses included); httpcore alone would read 1xx responses until the deadline."""
MAX_INTERIM = 16  # informational (1xx) responses accepted before the final one


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

    url: httpx.URL
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
    context: ssl.SSLContext | None = None,
    timeout: float,
    t0: float,
    max_redirects: int = 5,
    read_cap: int = BODY_READ_CAP,
    ports: Mapping[str, int] | None = None,
    allow_loopback: bool = False,
    follow_https: bool = True,
) -> HTTPObservation:
    """GET ``url`` from ``address`` (never resolved), following same-host redirects.

    ``follow_https=False`` stops at a redirect from http to https: the
    plaintext path is measured on its own, so an SNI block on the upgraded hop
    cannot be mistaken for Host filtering.

    ``host`` overrides the Host header and ``server_name`` the SNI (both
    default to the URL's host); ``context`` verifies https (a default
    verifying context when None).  ``ports`` maps a scheme to the port used
    when a URL has none.  Raises ValueError only for caller errors (a URL that
    is not http(s), an address that is not an IP literal); network behaviour
    always ends in an observation, within ``timeout`` seconds.
    """
    import httpx

    start = time.monotonic()
    ip = netaddr.parse(address)
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port_map = {**DEFAULT_PORTS, **(ports or {})}
    first = _target(parsed, port_map, host=host, server_name=server_name)

    def observe(
        failure: Failure | None, response: _Response | None = None, **extra: Any
    ) -> HTTPObservation:
        return _observation(url, address, first, start, t0, failure, response, **extra)

    if not netaddr.is_dialable(address, allow_loopback=allow_loopback):
        return observe(Failure.ADDRESS_UNUSABLE)

    redirects: list[Redirect] = []
    response = _Response(cap=read_cap)
    failure: Failure | None = None
    deadline = start + timeout
    try:
        async with asyncio.timeout(timeout):
            target: _Target | None = first
            while target is not None:
                response = _Response(cap=read_cap)
                async with _send(target, address, context, deadline, response) as reply:
                    current, target = target, None
                    location = reply.headers.get("location")
                    if reply.status_code in _REDIRECT_STATUSES and location:
                        joined = _join(current.url, location)
                        absolute = str(joined) if joined is not None else location
                        redirects.append(Redirect(reply.status_code, absolute))
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
    except TimeoutError:
        failure = Failure.TIMEOUT
    except Exception as exc:  # network behaviour must become data, never an exception
        failure = failure_from_exception(exc)
        if failure is Failure.UNKNOWN_ERROR:
            log.warning("unexpected error fetching %s from %s", url, address, exc_info=exc)
    return observe(failure, response, redirects=tuple(redirects))


def _target(
    url: httpx.URL,
    ports: Mapping[str, int],
    *,
    host: str | None = None,
    server_name: str | None = None,
) -> _Target:
    name = url.raw_host.decode("ascii")
    authority = f"[{name}]" if ":" in name else name
    if url.port is not None:  # explicit and not the scheme's default: browsers send it
        authority = f"{authority}:{url.port}"
    port = url.port if url.port is not None else ports[url.scheme]
    sni = (server_name or name) if url.scheme == "https" else None
    return _Target(url=url, host=host or authority, port=port, server_name=sni)


def _join(base: httpx.URL, location: str) -> httpx.URL | None:
    import httpx

    try:
        joined = base.join(location)
    except (httpx.InvalidURL, ValueError):
        return None
    return joined if joined.scheme in ("http", "https") and joined.raw_host else None


def _same_host(url: httpx.URL, target: _Target) -> bool:
    """Does ``url`` name the host this hop asked for (the Host header's name)?"""
    asked = target.host.rsplit(":", 1)[0] if not target.host.endswith("]") else target.host
    asked = asked.strip("[]").lower().rstrip(".")
    return url.raw_host.decode("ascii").lower().rstrip(".") == asked


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


class _HeadMeter:
    """Counts what arrives until the final response head is complete (told by
    httpcore's trace), and stops a server that floods before it."""

    def __init__(self) -> None:
        self.received = 0
        self.heads = 0
        self.done = False

    def count(self, data: bytes) -> None:
        import httpcore

        if self.done:
            return
        self.received += len(data)
        self.heads += data.count(b"\r\n\r\n")
        if self.received > HEAD_LIMIT or self.heads > MAX_INTERIM + 1:
            raise httpcore.RemoteProtocolError(
                f"response head not complete after {self.received} bytes, {self.heads} heads"
            )


def _metered_transport(
    verify: ssl.SSLContext | bool, meter: _HeadMeter
) -> httpx.AsyncHTTPTransport:
    """httpx's transport, one connection, whose streams report to ``meter``.

    httpx takes no network backend, so its pool is replaced by an equal one
    that has it (the pool is the transport's only state).
    """
    import httpcore
    import httpx

    class Stream(httpcore.AsyncNetworkStream):
        def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
            self._inner = inner

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            data = await self._inner.read(max_bytes, timeout)
            meter.count(data)
            return data

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            await self._inner.write(buffer, timeout)

        async def aclose(self) -> None:
            await self._inner.aclose()

        async def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.AsyncNetworkStream:
            return Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class Backend(httpcore.AnyIOBackend):
        async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
            return Stream(await super().connect_tcp(*args, **kwargs))

    transport = httpx.AsyncHTTPTransport(verify=verify)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=1,
        max_keepalive_connections=0,
        network_backend=Backend(),
    )
    return transport


@contextlib.asynccontextmanager
async def _send(
    target: _Target,
    address: str,
    context: ssl.SSLContext | None,
    deadline: float,
    response: _Response,
) -> AsyncIterator[httpx.Response]:
    """Send one GET to ``address``, record the response head in ``response``,
    and yield the streaming response (closed, with its client, on exit)."""
    import httpx

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    verify: ssl.SSLContext | bool = False  # plaintext: no TLS context is ever used
    if target.url.scheme == "https":
        verify = context if context is not None else ssl.create_default_context()
    marks: dict[str, float] = {}
    meter = _HeadMeter()

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if event.startswith("http11.receive_response_headers."):
            marks[event.rsplit(".", 1)[1]] = time.monotonic()
            meter.done = event.endswith(".complete")

    extensions: dict[str, Any] = {"timeout": httpx.Timeout(remaining).as_dict(), "trace": trace}
    if target.server_name is not None:
        extensions["sni_hostname"] = target.server_name
    pinned = target.url.copy_with(host=address, port=target.port)
    # Built directly (not client.build_request) so the headers keep a browser's order.
    request = httpx.Request("GET", pinned, headers=_headers(target.host), extensions=extensions)
    transport = _metered_transport(verify, meter)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        sent = time.monotonic()
        reply = await client.send(request, stream=True, follow_redirects=False)
        try:
            received = marks.get("complete", time.monotonic())
            response.ttfb_ms = (received - marks.get("started", sent)) * 1000
            response.status = reply.status_code
            response.headers = normalise_headers(reply.headers.multi_items())
            response.charset = body_charset(reply.headers.get("content-type"))
            yield reply
        finally:
            await reply.aclose()


async def _read_body(reply: httpx.Response, response: _Response) -> None:
    """Read the body into ``response`` until its end or the read cap.

    The raw bytes are decoded here, not by httpx, so that both what arrives
    and what it decodes to stop at the cap (see :mod:`probe.checks.decode`).
    """
    decoder = BodyDecoder(reply.headers.get("content-encoding"), response.cap)
    received = 0
    async for raw in reply.aiter_raw():
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
