"""The helper's measurement of one request, with the probe's own checks.

It resolves the URL's host itself, then concurrently connects to every
endpoint the probe sent plus its own addresses (TLS with SNI = the host on
port 443, certificate verified) and fetches the URL, following redirects
across hosts (each new host resolved here and vetted like the rest).  All of
it runs under one deadline and one body cap.

It is not an open proxy: unless ``allow_private`` is set (labs only), any
address that is not globally routable — loopback, private, link-local,
IANA special-purpose, IPv4-mapped IPv6 of those — is never dialled, whether
the probe sent it, DNS returned it or a redirect pointed at it.  The policy
is the project's one: :func:`probe.netaddr.is_dialable` plus
:func:`probe.netaddr.is_bogon`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from probe import netaddr
from probe.failures import Failure
from probe.helper.protocol import ControlRequest
from probe.observations import (
    HelperASN,
    HelperEndpoint,
    HelperHTTP,
    HelperObservation,
    HTTPObservation,
    Redirect,
)

if TYPE_CHECKING:
    import ssl

    from probe.checks.dns import Resolver
    from probe.helper.asn import ASNDatabase

DNS_SHARE = 0.4  # of the deadline, at most, spent resolving
MAX_ADDRESSES = 8  # of the helper's own, per family
MAX_HOPS = 10  # redirects followed across hosts (OONI stops after ten)
_HTTP_ALPN = ("http/1.1",)


@dataclass(frozen=True)
class HelperSettings:
    """How the helper measures; fixed for the server's lifetime."""

    resolver: Resolver
    timeout: float = 8.0  # per request
    read_cap: int = 1024 * 1024  # response body bytes read per fetch
    ca_bundle: str | None = None
    allow_private: bool = False  # labs only: dial private and special-purpose addresses
    allow_loopback: bool = False  # tests only: targets on this host
    asn: ASNDatabase | None = None

    def may_dial(self, address: str) -> bool:
        if not netaddr.is_dialable(address, allow_loopback=self.allow_loopback):
            return False
        ip = netaddr.parse(address)
        if self.allow_loopback and ip is not None and ip.is_loopback:
            return True
        return self.allow_private or not netaddr.is_bogon(address)


async def measure(request: ControlRequest, settings: HelperSettings) -> HelperObservation:
    """The helper's view of ``request``; never raises for network behaviour."""
    t0 = time.monotonic()
    deadline = t0 + settings.timeout
    dns_failure, addresses = await _resolve(request.host, settings, deadline, t0)
    parts = urlsplit(request.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # TLS where the URL would use it, and on 443 for an http:// URL (OONI's
    # extension E001: a valid certificate proves an address is the site's).
    tls_ports = {443, port} if parts.scheme == "https" else {443}
    wanted = dict.fromkeys(
        [*request.endpoints, *((a, p) for a in addresses for p in sorted({port, 443}))]
    )
    dialled = [(a, p) for a, p in wanted if settings.may_dial(a)]
    verified = _context(settings, alpn=())
    jobs = [
        _endpoint(a, p, request.host if p in tls_ports else None, verified, settings, deadline, t0)
        for a, p in dialled
    ]
    results = await asyncio.gather(_fetch(request, addresses, settings, deadline, t0), *jobs)
    http, endpoints = results[0], results[1:]
    assert isinstance(http, HelperHTTP)
    return HelperObservation(
        helper="",
        t_ms=0.0,
        elapsed_ms=round((time.monotonic() - t0) * 1000, 1),
        failure=None,
        url=request.url,
        dns_failure=dns_failure,
        dns_addresses=tuple(addresses),
        endpoints=tuple(e for e in endpoints if isinstance(e, HelperEndpoint)),
        http=http,
        asns=_asns(settings, [*addresses, *(a for a, _ in request.endpoints)]),
    )


def _context(settings: HelperSettings, alpn: tuple[str, ...]) -> ssl.SSLContext:
    from probe.checks import tls

    return tls.make_context(settings.ca_bundle, alpn=alpn or tls.DEFAULT_ALPN)


async def _resolve(
    host: str, settings: HelperSettings, deadline: float, t0: float
) -> tuple[Failure | None, list[str]]:
    """The host's A and AAAA addresses (an IP literal is its own answer)."""
    from probe.checks import dns

    if netaddr.is_ip(host):
        return None, [str(netaddr.parse(host))]
    timeout = max(0.1, (deadline - time.monotonic()) * DNS_SHARE)
    queries = await asyncio.gather(
        *(
            dns.query(
                settings.resolver,
                host,
                qtype,
                origin="control",
                timeout=timeout,
                t0=t0,
                window=0.0,
                ca_bundle=settings.ca_bundle,
            )
            for qtype in ("A", "AAAA")
        )
    )
    addresses = [a for q in queries for a in q.addresses[:MAX_ADDRESSES]]
    if addresses:
        return None, list(dict.fromkeys(addresses))
    failures = [q.failure for q in queries if q.failure is not None]
    # NXDOMAIN wins: it says the name does not exist, whatever the other type said.
    first = next((f for f in failures if f is Failure.DNS_NXDOMAIN), None)
    return first or (failures[0] if failures else Failure.DNS_NO_ANSWER), []


async def _endpoint(
    address: str,
    port: int,
    server_name: str | None,
    context: ssl.SSLContext,
    settings: HelperSettings,
    deadline: float,
    t0: float,
) -> HelperEndpoint:
    from probe.checks import tcp, tls

    remaining = max(0.0, deadline - time.monotonic())
    loopback = settings.allow_loopback
    if server_name is None or netaddr.is_ip(server_name):
        tcp_obs, conn = await tcp.connect(
            address, port, timeout=remaining, t0=t0, allow_loopback=loopback
        )
        if conn is not None:
            await conn.close()
        return HelperEndpoint(address, port, tcp_obs.failure)
    tcp_obs, tls_obs = await tls.probe_tls(
        address,
        port,
        server_name,
        context=context,
        timeout=remaining,
        t0=t0,
        allow_loopback=loopback,
    )
    if tls_obs is None:
        return HelperEndpoint(address, port, tcp_obs.failure)
    return HelperEndpoint(address, port, None, server_name, tls_obs.failure)


async def _fetch(
    request: ControlRequest,
    addresses: Sequence[str],
    settings: HelperSettings,
    deadline: float,
    t0: float,
) -> HelperHTTP:
    """GET the URL like a browser: follow redirects to other hosts (at most
    :data:`MAX_HOPS`), each from the first address of that host we may dial."""
    from probe.checks import http

    context = _context(settings, alpn=_HTTP_ALPN)
    url, hops = request.url, list[Redirect]()
    candidates = list(addresses)
    for _ in range(MAX_HOPS + 1):
        address = next((a for a in candidates if settings.may_dial(a)), None)
        if address is None:
            refused = Failure.ADDRESS_UNUSABLE if candidates else Failure.DNS_NO_ANSWER
            return HelperHTTP(refused, None, None, redirects=tuple(hops))
        result = await http.fetch(
            url,
            address=address,
            context=context,
            timeout=max(0.0, deadline - time.monotonic()),
            t0=t0,
            read_cap=settings.read_cap,
            allow_loopback=settings.allow_loopback,
        )
        hops += result.redirects
        elsewhere = _next_hop(result)
        if elsewhere is None:
            return _page(result, hops)
        url = elsewhere
        host = urlsplit(url).hostname or ""
        failure, candidates = await _resolve(host, settings, deadline, t0)
        if failure is not None:
            return HelperHTTP(failure, None, None, redirects=tuple(hops))
    return HelperHTTP(Failure.HTTP_TOO_MANY_REDIRECTS, None, None, redirects=tuple(hops))


def _next_hop(result: HTTPObservation) -> str | None:
    """The URL a redirect the fetch did not follow (another host) points at."""
    if result.failure is not None or result.status is None or not result.redirects:
        return None
    if not 300 <= result.status < 400:
        return None
    location = result.redirects[-1].location
    return location if urlsplit(location).scheme in ("http", "https") else None


def _page(result: HTTPObservation, hops: Sequence[Redirect]) -> HelperHTTP:
    """What OONI's helper reports of the final response (a failure after the
    status line keeps the status, as the probe's own observations do)."""
    got = result.status is not None
    return HelperHTTP(
        failure=result.failure if not got or result.failure is not Failure.TIMEOUT else None,
        status=result.status,
        body_length=result.body_length if got else None,
        title=result.title,
        headers=result.headers,
        redirects=tuple(hops),
    )


def _asns(settings: HelperSettings, addresses: Sequence[str]) -> tuple[HelperASN, ...]:
    if settings.asn is None:
        return ()
    found = ((a, settings.asn.lookup(a)) for a in dict.fromkeys(addresses))
    return tuple(HelperASN(a, n) for a, n in found if n)
