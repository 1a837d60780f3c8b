"""DNS over HTTPS (RFC 8484): the control resolver a local censor cannot rewrite.

Queries are POSTed as ``application/dns-message`` with httpx (dnspython's own
DoH support needs another HTTP package).  The reply is converted and judged
exactly like a UDP reply, by the helpers of :mod:`probe.checks.dns`.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from probe.checks.dns import (
    Resolver,
    make_query,
    ms_since,
    parse_reply,
    reply_failure,
    reply_from_message,
)
from probe.checks.errors import failure_from_exception
from probe.checks.tls import make_context
from probe.failures import Failure
from probe.netaddr import endpoint_label
from probe.observations import DNSQuery, DNSReply, Origin

MAX_BODY = 64 * 1024  # a DNS message is at most 65535 bytes; more is not DNS
_MEDIA_TYPE = "application/dns-message"
# httpcore sets ALPN on the context it is given; asking for the value it will
# set keeps the shared, cached context of probe.checks.tls unchanged.
_ALPN = ("http/1.1",)


async def query_doh(
    resolver: Resolver,
    qname: str,
    qtype: str,
    *,
    origin: Origin,
    timeout: float,
    t0: float,
    ca_bundle: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> DNSQuery:
    """POST one query to ``resolver.url``; never raises for network behaviour.

    The whole exchange (connect, TLS, request, body) is bounded by ``timeout``.
    A non-200 status or a body that is not a reply to the query is
    ``dns_bad_reply``.  When ``client`` is given it is used as is (its own
    verification settings apply) and left open.
    """
    start = time.monotonic()
    url = resolver.url or f"https://{endpoint_label(resolver.host, resolver.port)}/dns-query"
    message = make_query(qname, qtype, doh=True)
    failure: Failure | None
    replies: tuple[DNSReply, ...] = ()
    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(
            verify=make_context(ca_bundle, alpn=_ALPN),
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,
        )
    try:
        async with asyncio.timeout(timeout):
            status, body = await _post(client, url, message.to_wire())
        reply = parse_reply(message, body) if status == 200 else None
        if reply is None:
            failure = Failure.DNS_BAD_REPLY
        else:
            converted = reply_from_message(reply, elapsed_ms=ms_since(start), source=url)
            failure = reply_failure(converted, qname, qtype)
            replies = (converted,)
    except Exception as exc:
        failure = failure_from_exception(exc)
    finally:
        if own_client:
            await client.aclose()
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


async def _post(client: httpx.AsyncClient, url: str, wire: bytes) -> tuple[int, bytes]:
    """The status and at most :data:`MAX_BODY` + 1 bytes of the body (enough to tell
    an oversized body, which then fails to parse, from a DNS message)."""
    # identity: a compressed body could expand far beyond the read cap.
    headers = {"content-type": _MEDIA_TYPE, "accept": _MEDIA_TYPE, "accept-encoding": "identity"}
    async with client.stream("POST", url, content=wire, headers=headers) as response:
        if response.status_code != 200:
            return response.status_code, b""
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_BODY:
                break
        return response.status_code, bytes(body[: MAX_BODY + 1])
