"""Hand-built, realistic observations and verdicts for storage tests.

Addresses are from documentation ranges (RFC 5737 / 3849) so nothing here
could be mistaken for a real target.
"""

from __future__ import annotations

import datetime as dt

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
    HTTPObservation,
    Redirect,
    TCPObservation,
    TLSObservation,
)
from probe.verdict import Method, Status, Trigger, Verdict
from storage.records import Vantage

START = dt.datetime(2024, 2, 17, 17, 5, 0, 123000, tzinfo=dt.UTC)
SETTINGS = CheckSettings(
    resolver="udp://192.0.2.53:53",
    control_resolvers=("https://192.0.2.1/dns-query",),
    control_sni="example.org",
    control_domains=("example.org", "example.net"),
    timeout_s=5.0,
    ca_bundle=None,
)
VANTAGE = Vantage(name="lahore-ptcl", country="PK", asn=17557, network="PTCL", notes="home DSL")

_CERT = Certificate(
    subject="CN=x.com",
    issuer="CN=Example Test CA",
    sans=("x.com", "*.x.com"),
    sha256="ab" * 32,
    not_before="2024-01-01T00:00:00.000Z",
    not_after="2025-01-01T00:00:00.000Z",
)


def _query(origin: str, qtype: str, t_ms: float, *addresses: str, **kw: object) -> DNSQuery:
    records = tuple(DNSRecord("A" if ":" not in a else "AAAA", "x.com.", a, 300) for a in addresses)
    replies = kw.pop("replies", None) or (
        (DNSReply("NOERROR", records, 12.5, "192.0.2.53:53"),) if addresses else ()
    )
    return DNSQuery(
        resolver=SETTINGS.resolver if origin == "vantage" else SETTINGS.control_resolvers[0],
        origin=origin,  # type: ignore[arg-type]
        qname="x.com",
        qtype=qtype,
        t_ms=t_ms,
        elapsed_ms=12.5,
        failure=kw.pop("failure", None),  # type: ignore[arg-type]
        replies=replies,  # type: ignore[arg-type]
    )


def blocked_sni(
    *,
    domain: str = "x.com",
    started_at: dt.datetime = START,
    platform: str | None = "x",
    title: str | None = "Site blocked",
    probe_version: str = "0.1.0",
) -> DomainObservations:
    """SNI reset on 443, a blockpage on 80, DNS injection, every observation kind."""
    injected = (
        DNSReply(
            "NOERROR", (DNSRecord("A", f"{domain}.", "198.51.100.7", 60),), 3.1, "192.0.2.53:53"
        ),
        DNSReply(
            "NOERROR", (DNSRecord("A", f"{domain}.", "203.0.113.10", 300),), 15.2, "192.0.2.53:53"
        ),
    )
    dns = (
        _query("vantage", "A", 0.5, replies=injected),
        _query(
            "vantage",
            "AAAA",
            0.7,
            failure=Failure.DNS_NO_ANSWER,
            replies=(DNSReply("NOERROR", (), 11.0, "192.0.2.53:53"),),
        ),
        _query("control", "A", 0.9, "203.0.113.10"),
    )
    addr = "198.51.100.7"
    https = EndpointObservation(
        address=addr,
        port=443,
        origins=("vantage",),
        tcp=TCPObservation(addr, 443, 20.0, 41.0, None),
        tls=TLSObservation(addr, 443, domain, 61.5, 45.25, Failure.CONNECTION_RESET),
        tls_control_sni=TLSObservation(
            addr,
            443,
            "example.org",
            110.0,
            50.0,
            None,
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
            "h2",
            (_CERT,),
        ),
        http=HTTPObservation(
            url=f"https://{domain}/",
            address=addr,
            port=443,
            host=domain,
            server_name=domain,
            t_ms=61.5,
            elapsed_ms=45.25,
            failure=Failure.CONNECTION_RESET,
        ),
        http_control_sni=HTTPObservation(
            url=f"https://{domain}/",
            address=addr,
            port=443,
            host=domain,
            server_name="example.org",
            t_ms=170.0,
            elapsed_ms=80.0,
            failure=None,
            status=200,
            headers=(("content-type", "text/html"), ("server", "tsa_b")),
            title="X",
            body="<html><title>X</title></html>",
            body_length=29,
            body_sha256="cd" * 32,
            ttfb_ms=60.0,
            body_ms=2.0,
            redirects=(Redirect(301, f"https://{domain}/home"),),
        ),
    )
    plain = EndpointObservation(
        address=addr,
        port=80,
        origins=("vantage",),
        tcp=TCPObservation(addr, 80, 21.0, 40.0, None),
        http=HTTPObservation(
            url=f"http://{domain}/",
            address=addr,
            port=80,
            host=domain,
            server_name=None,
            t_ms=62.0,
            elapsed_ms=55.0,
            failure=None,
            status=200,
            headers=(("content-type", "text/html; charset=utf-8"),),
            title=title,
            body=f"<html><title>{title}</title>prohibited for viewership</html>",
            body_length=64,
            body_sha256="ef" * 32,
            body_truncated=False,
            ttfb_ms=50.0,
            body_ms=1.0,
        ),
        http_control_host=HTTPObservation(
            url="http://example.org/",
            address=addr,
            port=80,
            host="example.org",
            server_name=None,
            t_ms=130.0,
            elapsed_ms=30.0,
            failure=Failure.EOF,
        ),
    )
    skipped = EndpointObservation(
        address="::1", port=443, origins=("vantage",), tcp=None, skipped=Failure.ADDRESS_UNUSABLE
    )
    control_site = ControlSiteObservation(
        domain="example.org",
        dns=(_query("vantage", "A", 1.0, "192.0.2.80"),),
        tcp=TCPObservation("192.0.2.80", 443, 30.0, 20.0, None),
        tls=TLSObservation("192.0.2.80", 443, "example.org", 50.0, 30.0, None, "TLSv1.3"),
    )
    return DomainObservations(
        domain=domain,
        input=f"https://{domain}/",
        platform=platform,
        started_at=started_at,
        duration_ms=250.75,
        settings=SETTINGS,
        dns=dns,
        endpoints=(https, plain, skipped),
        controls=(control_site,),
        probe_version=probe_version,
        notes=("addresses capped at 4 per family",),
    )


def accessible(
    *, domain: str = "example.com", started_at: dt.datetime = START, platform: str | None = None
) -> DomainObservations:
    addr = "203.0.113.20"
    return DomainObservations(
        domain=domain,
        input=domain,
        platform=platform,
        started_at=started_at,
        duration_ms=90.0,
        settings=SETTINGS,
        dns=(_query("vantage", "A", 0.1, addr), _query("control", "A", 0.2, addr)),
        endpoints=(
            EndpointObservation(
                address=addr,
                port=443,
                origins=("vantage", "control"),
                tcp=TCPObservation(addr, 443, 13.0, 10.0, None),
                tls=TLSObservation(addr, 443, domain, 23.0, 20.0, None, "TLSv1.3", chain=(_CERT,)),
                http=HTTPObservation(
                    url=f"https://{domain}/",
                    address=addr,
                    port=443,
                    host=domain,
                    server_name=domain,
                    t_ms=43.0,
                    elapsed_ms=30.0,
                    failure=None,
                    status=200,
                    title="Example Domain",
                    body="<title>Example Domain</title>",
                    body_length=30,
                ),
            ),
        ),
        probe_version="0.1.0",
    )


BLOCKED = Verdict(
    status=Status.BLOCKED,
    blocking=(Method.DNS_INJECTION, Method.TLS_RESET, Method.HTTP_BLOCKPAGE),
    trigger=Trigger.SNI,
    reasons=("TLS reset only with the target SNI", "plaintext HTTP returned a blockpage"),
    blockpage="pk-prohibited",
    https_ok=False,
)
ACCESSIBLE = Verdict(status=Status.ACCESSIBLE, https_ok=True)
