"""Concise factories for observations, so classifier tests read like a decision table.

Every factory builds a *working* thing unless told otherwise: ``https(addr)``
is an endpoint where TCP, TLS and HTTPS all succeed; pass a failure to break
one layer (``https(addr, tls=Failure.CONNECTION_RESET)``).  ``site(...)``
wraps everything into a :class:`DomainObservations` with a reachable control
site; ``working(...)`` is a whole healthy measurement to start from.

Addresses default to public-looking ones (X's 104.244.42.0/24): pure tests
never dial them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from probe import netaddr
from probe.failures import Failure
from probe.observations import (
    Certificate,
    CheckSettings,
    ControlSiteObservation,
    DNSQuery,
    DNSRecord,
    DNSReply,
    DomainObservations,
    EndpointObservation,
    HelperASN,
    HelperEndpoint,
    HelperHTTP,
    HelperObservation,
    HTTPObservation,
    Origin,
    Redirect,
    TCPObservation,
    TLSObservation,
)

DOMAIN = "x.com"
ADDR = "104.244.42.1"
ADDR2 = "104.244.43.1"  # another /24: not "near" ADDR
ADDR6 = "2606:1f80:f000::1"
CONTROL_SNI = "example.org"
CONTROL_DOMAIN = "control.example"
VANTAGE_RESOLVER = "udp://10.0.0.1:53"
CONTROL_RESOLVER = "https://dns.control.example/dns-query"
STARTED = dt.datetime(2024, 2, 18, 12, 0, tzinfo=dt.UTC)
PAGE = "<html><head><title>X</title></head><body>" + "x" * 4000 + "</body></html>"

BOTH: tuple[Origin, ...] = ("vantage", "control")
_DEFAULT: Any = object()  # "build the working one"


# ------------------------------------------------------------------------ DNS


def reply(*addresses: str, rcode: str = "NOERROR", name: str = DOMAIN) -> DNSReply:
    records = tuple(
        DNSRecord("AAAA" if netaddr.family(a) == 6 else "A", name, a, 300) for a in addresses
    )
    return DNSReply(rcode, records, elapsed_ms=20.0, source="10.0.0.1:53")


_RCODES = {
    Failure.DNS_NXDOMAIN: "NXDOMAIN",
    Failure.DNS_SERVFAIL: "SERVFAIL",
    Failure.DNS_REFUSED: "REFUSED",
    Failure.DNS_NO_ANSWER: "NOERROR",
}


def dns(
    *addresses: str,
    origin: Origin = "vantage",
    qtype: str | None = None,
    failure: Failure | None = None,
    replies: Sequence[DNSReply] | None = None,
    name: str = DOMAIN,
) -> DNSQuery:
    """A query and its reply: ``dns(ADDR)``; ``dns(failure=Failure.DNS_NXDOMAIN)``;
    ``dns(replies=[reply("10.1.1.1"), reply(ADDR)])`` for injection.

    An rcode failure gets a reply carrying that rcode; a timeout gets none.
    """
    if qtype is None:
        first = addresses[0] if addresses else None
        qtype = "AAAA" if first and netaddr.family(first) == 6 else "A"
    if replies is None:
        if failure in _RCODES:
            replies = [reply(rcode=_RCODES[failure], name=name)]
        elif failure is None:
            replies = [reply(*addresses, name=name)]
        else:
            replies = []
    if failure is None and not any(r.addresses for r in replies[:1]):
        failure = Failure.DNS_NO_ANSWER if replies else Failure.TIMEOUT
    resolver = VANTAGE_RESOLVER if origin == "vantage" else CONTROL_RESOLVER
    return DNSQuery(resolver, origin, name, qtype, 0.0, 20.0, failure, tuple(replies))


def resolves(*addresses: str, control: Sequence[str] | None = None) -> tuple[DNSQuery, ...]:
    """Vantage and control A/AAAA queries; ``control`` defaults to the same addresses."""
    control = addresses if control is None else control
    queries: list[DNSQuery] = []
    for origin, addrs in (("vantage", addresses), ("control", control)):
        for fam in (4, 6):
            mine = [a for a in addrs if netaddr.family(a) == fam]
            if mine:
                queries.append(dns(*mine, origin=origin))  # type: ignore[arg-type]
    return tuple(queries)


# ------------------------------------------------------------- TCP, TLS, HTTP


def cert(name: str = DOMAIN, issuer: str = "Test Root CA") -> Certificate:
    return Certificate(
        f"CN={name}",
        f"CN={issuer}",
        (name,),
        "ab" * 32,
        "2024-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
    )


def tcp(address: str = ADDR, port: int = 443, failure: Failure | None = None) -> TCPObservation:
    return TCPObservation(address, port, 0.0, 30.0, failure)


def tls(
    address: str = ADDR,
    server_name: str = DOMAIN,
    failure: Failure | None = None,
    issuer: str = "Test Root CA",
) -> TLSObservation:
    """A handshake; a certificate failure still records the chain (as the probe does)."""
    chain = (cert(server_name, issuer),) if failure is None or failure.is_tls_certificate else ()
    done = failure is None
    return TLSObservation(
        address,
        443,
        server_name,
        30.0,
        40.0,
        failure,
        version="TLSv1.3" if done else None,
        cipher="TLS_AES_128_GCM_SHA256" if done else None,
        alpn="http/1.1" if done else None,
        chain=chain,
    )


def response(
    address: str = ADDR,
    port: int = 443,
    *,
    host: str = DOMAIN,
    server_name: str | None = DOMAIN,
    status: int | Any | None = _DEFAULT,
    body: str = PAGE,
    title: str | None = "X",
    failure: Failure | None = None,
    location: str | None = None,
    redirects: Sequence[tuple[int, str]] = (),
    body_length: int | None = None,
    body_ms: float | None = None,
) -> HTTPObservation:
    """An HTTP exchange; ``location`` makes it a redirect not followed (another host).

    ``status`` defaults to 200, or to None (no response) when ``failure`` is given;
    pass both for a body cut by ``failure`` after the status line.
    """
    if status is _DEFAULT:
        status = 200 if failure is None else None
    if status is None:
        body, title = "", None
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/html"),)
    hops = [Redirect(s, loc) for s, loc in redirects]
    if location is not None:
        status = 302 if status in (200, None) else status
        headers += (("location", location),)
        hops.append(Redirect(status or 302, location))
        body, title = "", None
    scheme = "https" if port == 443 else "http"
    length = len(body.encode()) if body_length is None else body_length
    return HTTPObservation(
        url=f"{scheme}://{host}/",
        address=address,
        port=port,
        host=host,
        server_name=server_name if port == 443 else None,
        t_ms=70.0,
        elapsed_ms=100.0,
        failure=failure,
        status=status,
        headers=headers,
        title=title,
        body=body[:16384],
        body_length=length,
        body_sha256=None,
        ttfb_ms=50.0 if status is not None else None,
        body_ms=body_ms if body_ms is not None else (10.0 if status is not None else None),
        redirects=tuple(hops),
    )


def slow(rate_kbps: float, *, address: str = ADDR, server_name: str = DOMAIN) -> HTTPObservation:
    """An HTTPS download of 256 KiB at ``rate_kbps`` kbit/s (for throttling)."""
    length = 256 * 1024
    return response(
        address, server_name=server_name, body_length=length, body_ms=length * 8 / rate_kbps
    )


def https(
    address: str = ADDR,
    *,
    origins: tuple[Origin, ...] = BOTH,
    tcp_failure: Failure | None = None,
    tls_failure: Failure | None = None,
    issuer: str = "Test Root CA",
    control_sni: Failure | Any | None = _DEFAULT,
    control_issuer: str = "Other CA",
    http: HTTPObservation | Any | None = _DEFAULT,
    http_control_sni: HTTPObservation | None = None,
) -> EndpointObservation:
    """A port-443 endpoint; each layer is measured only if the previous one worked.

    ``control_sni``: the control-SNI handshake's failure (None = it worked);
    by default it is made only when the target-SNI handshake failed.
    """
    if tcp_failure is not None:
        return EndpointObservation(address, 443, origins, tcp(address, 443, tcp_failure))
    target = tls(address, DOMAIN, tls_failure, issuer)
    if control_sni is _DEFAULT:
        control = None if tls_failure is None else tls(address, CONTROL_SNI, None, control_issuer)
    else:
        control = tls(address, CONTROL_SNI, control_sni, control_issuer)
    if http is _DEFAULT:
        http = response(address) if tls_failure is None else None
    return EndpointObservation(
        address,
        443,
        origins,
        tcp(address, 443),
        tls=target,
        tls_control_sni=control,
        http=http,
        http_control_sni=http_control_sni,
    )


def plain(
    address: str = ADDR,
    *,
    origins: tuple[Origin, ...] = BOTH,
    tcp_failure: Failure | None = None,
    http: HTTPObservation | Any | None = _DEFAULT,
    control_host: HTTPObservation | None = None,
) -> EndpointObservation:
    """A port-80 endpoint; by default ``http://DOMAIN/`` redirects to ``https://DOMAIN/``."""
    if tcp_failure is not None:
        return EndpointObservation(address, 80, origins, tcp(address, 80, tcp_failure))
    if http is _DEFAULT:
        http = redirect_to_https(address)
    return EndpointObservation(
        address, 80, origins, tcp(address, 80), http=http, http_control_host=control_host
    )


def redirect_to_https(address: str = ADDR) -> HTTPObservation:
    return response(address, 80, status=301, location=f"https://{DOMAIN}/")


def control_host(address: str = ADDR, failure: Failure | None = None) -> HTTPObservation:
    """The plaintext request with ``Host:`` the control domain."""
    return response(address, 80, host=CONTROL_SNI, failure=failure, title="Example")


def control_sni_http(
    address: str = ADDR, failure: Failure | None = None, rate_kbps: float | None = None
) -> HTTPObservation:
    if rate_kbps is not None:
        return slow(rate_kbps, address=address, server_name=CONTROL_SNI)
    return response(address, server_name=CONTROL_SNI, failure=failure, title="Example")


def skipped(
    address: str, port: int = 443, origins: tuple[Origin, ...] = ("vantage",)
) -> EndpointObservation:
    """An address never dialled (loopback/unspecified answer)."""
    return EndpointObservation(address, port, origins, None, skipped=Failure.ADDRESS_UNUSABLE)


def endpoints(*addresses: str, **https_kwargs: Any) -> tuple[EndpointObservation, ...]:
    """Working 443 and 80 endpoints for each address (``https_kwargs`` go to :func:`https`)."""
    return tuple(e for a in addresses for e in (https(a, **https_kwargs), plain(a)))


# -------------------------------------------------------------- control helper

HELPER = "https://helper.example/"


def helper(
    *addresses: str,
    dns_failure: Failure | None = None,
    tcp: Failure | None = None,
    tls: Failure | None = None,
    status: int | None = 200,
    title: str = "X",
    body_length: int = len(PAGE),
    redirects: Sequence[tuple[int, str]] = (),
    asns: dict[str, int] | None = None,
    failure: Failure | None = None,
) -> HelperObservation:
    """The helper's view: it resolved ``addresses`` (default ADDR) and every 443/80
    endpoint of them behaved as told; ``failure`` means no helper answered."""
    if failure is not None:
        return HelperObservation(HELPER, 10.0, 500.0, failure, tried=(f"{HELPER}: {failure}",))
    addresses = addresses or (ADDR,)
    resolved = () if dns_failure else addresses
    eps = tuple(
        e
        for a in addresses
        for e in (
            HelperEndpoint(a, 443, tcp, DOMAIN if tcp is None else None, tls),
            HelperEndpoint(a, 80, tcp),
        )
    )
    failed = tcp or tls or dns_failure
    page = HelperHTTP(
        failed,
        None if failed else status,
        None if failed else body_length,
        None if failed else title,
        redirects=tuple(Redirect(s, loc) for s, loc in redirects),
    )
    known = tuple(HelperASN(a, n) for a, n in (asns or {}).items())
    return HelperObservation(
        HELPER, 10.0, 300.0, None, f"https://{DOMAIN}/", dns_failure, resolved, eps, page, known
    )


# --------------------------------------------------------------- control sites


def control_site(reachable: bool = True, *, vantage_dns_ok: bool = True) -> ControlSiteObservation:
    query = dns(
        "93.184.216.34",
        name=CONTROL_DOMAIN,
        failure=None if vantage_dns_ok else Failure.TIMEOUT,
    )
    failure = None if reachable else Failure.TIMEOUT
    return ControlSiteObservation(
        CONTROL_DOMAIN,
        (query,),
        tcp("93.184.216.34", 443, failure),
        tls("93.184.216.34", CONTROL_DOMAIN) if reachable else None,
    )


# ----------------------------------------------------------------- one domain


def site(
    *,
    dns: Sequence[DNSQuery] = (),
    endpoints: Sequence[EndpointObservation] = (),
    controls: Sequence[ControlSiteObservation] | None = None,
    domain: str = DOMAIN,
) -> DomainObservations:
    """A measurement; ``controls`` defaults to one reachable control site."""
    return DomainObservations(
        domain=domain,
        input=domain,
        platform="x",
        started_at=STARTED,
        duration_ms=1500.0,
        settings=CheckSettings(
            resolver=VANTAGE_RESOLVER,
            control_resolvers=(CONTROL_RESOLVER,),
            control_sni=CONTROL_SNI,
            control_domains=(CONTROL_DOMAIN,),
            timeout_s=10.0,
        ),
        dns=tuple(dns),
        endpoints=tuple(endpoints),
        controls=(control_site(),) if controls is None else tuple(controls),
        probe_version="test",
    )


def working(*addresses: str) -> DomainObservations:
    """A healthy measurement of x.com: DNS agrees, HTTPS works, HTTP redirects to HTTPS."""
    addresses = addresses or (ADDR,)
    return site(dns=resolves(*addresses), endpoints=endpoints(*addresses))


def replace(obs: DomainObservations, **changes: Any) -> DomainObservations:
    """``dataclasses.replace`` under a short name, for tweaking a built measurement."""
    return dataclasses.replace(obs, **changes)
