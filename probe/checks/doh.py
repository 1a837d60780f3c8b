"""DNS over HTTPS (RFC 8484): the control resolver a local censor cannot rewrite.

Queries are POSTed as ``application/dns-message`` over the same TCP, TLS and
HTTP/1.1 code as the plain checks (:mod:`probe.checks.tcp`, :func:`tls.start_tls`,
:class:`http.Exchange`), so a hostile resolver meets the same limits: the
handshake and post-handshake byte limits, at most 16 informational
responses and 256 KiB before the response head, and a body read cap.  The
reply is converted and judged exactly like a UDP reply, by the helpers of
:mod:`probe.checks.dns`.
"""

from __future__ import annotations

import ssl
import time

from probe.checks import tls
from probe.checks.dns import Asked, Resolver, ms_since, reply_failure
from probe.checks.errors import failure_from_exception
from probe.checks.http import HTTP_ALPN, Exchange
from probe.checks.tcp import open_connection
from probe.checks.timer import within
from probe.checks.url import URL
from probe.failures import Failure
from probe.netaddr import endpoint_label
from probe.observations import DNSQuery, DNSReply, Origin

MAX_BODY = 64 * 1024  # a DNS message is at most 65535 bytes; more is not DNS
_MEDIA_TYPE = "application/dns-message"


async def query_doh(
    resolver: Resolver,
    qname: str,
    qtype: str,
    *,
    origin: Origin,
    timeout: float,
    t0: float,
    ca_bundle: str | None = None,
    context: ssl.SSLContext | None = None,
) -> DNSQuery:
    """POST one query to ``resolver.url``; never raises for network behaviour.

    The whole exchange (connect, TLS, request, body) is bounded by ``timeout``.
    A non-200 status, a response that is not HTTP, or a body that is not a
    reply to the query is ``dns_bad_reply``.  ``context`` (default: one
    trusting the system store and ``ca_bundle``) verifies the resolver.
    """
    start = time.monotonic()
    url = resolver.url or f"https://{endpoint_label(resolver.host, resolver.port)}/dns-query"
    asked = Asked.new(qname, qtype, qid=0)  # id 0, as RFC 8484 advises
    context = context or tls.make_context(ca_bundle, alpn=HTTP_ALPN)  # UsageError: bad bundle
    failure: Failure | None
    replies: tuple[DNSReply, ...] = ()
    try:
        with within(timeout):
            status, body = await _post(resolver, url, asked.wire, context, timeout)
        read = asked.read(body) if status == 200 else None
        if read is None:
            failure = Failure.DNS_BAD_REPLY
        else:  # a truncated (TC) reply counts as it is: over HTTPS there is no retry
            _, rcode, records = read
            converted = DNSReply(rcode, records, ms_since(start), url)
            failure = reply_failure(converted, qname, qtype)
            replies = (converted,)
    except Exception as exc:
        failure = failure_from_exception(exc)
        if failure is Failure.HTTP_PROTOCOL_ERROR:  # an answer, but not one a resolver gives
            failure = Failure.DNS_BAD_REPLY
    return DNSQuery(
        resolver=resolver.label,
        origin=origin,
        qname=qname,
        qtype=qtype,
        t_ms=round((start - t0) * 1000, 3),
        elapsed_ms=replies[0].elapsed_ms if replies else ms_since(start),
        failure=failure,
        replies=replies,
    )


async def _post(
    resolver: Resolver, url: str, wire: bytes, context: ssl.SSLContext, timeout: float
) -> tuple[int, bytes]:
    """The status and at most :data:`MAX_BODY` + 1 bytes of the body (enough to tell
    an oversized body, which then fails to parse, from a DNS message)."""
    parsed = URL.parse(url)
    if parsed is None:
        raise ValueError(f"not an https URL: {url!r}")
    conn = await open_connection(resolver.host, resolver.port, timeout)
    try:
        await tls.start_tls(conn.writer, context, resolver.host, timeout)
        exchange = Exchange(conn)
        headers = [
            ("Host", parsed.authority),
            ("Content-Type", _MEDIA_TYPE),
            ("Accept", _MEDIA_TYPE),
            ("Accept-Encoding", "identity"),  # a compressed body could expand past the cap
            ("Content-Length", str(len(wire))),
        ]
        await exchange.request(parsed.target, headers, method="POST", body=wire)
        reply = await exchange.response()
        if reply.status != 200:
            return reply.status, b""
        body = bytearray()
        async for chunk in reply.aiter_raw():
            body += chunk
            if len(body) > MAX_BODY:
                break
        return reply.status, bytes(body[: MAX_BODY + 1])
    finally:
        await conn.close()
