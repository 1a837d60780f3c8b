"""Import OONI Web Connectivity measurements, re-classified by our classifier.

OONI's published measurements (one JSON document per measurement, or JSON
Lines, optionally gzipped) hold raw observations in ``test_keys``: DNS
``queries`` (df-002), ``tcp_connect`` (df-005), ``tls_handshakes`` (df-006),
``requests`` (df-001, newest first) and the test helper's ``control``.  They
are mapped onto :mod:`probe.observations` (what OONI did not measure stays
empty) and judged by :func:`probe.classify.classify`, so historical data and
our own checks share one verdict vocabulary; OONI's own ``blocking`` field is
not used.  Each measurement gets a UUID derived from its OONI identity (its
content when it has none), so importing a file twice adds nothing.

What is carried: the test helper's ``control`` as the helper observation
(the same protocol our probe speaks); only ``getaddrinfo``/system lookups as
the vantage's DNS, DoH lookups as control DNS (encrypted, like our own
control resolvers), UDP lookups to other resolvers as notes only (on-path
equipment can rewrite them); an input that redirects (a bit.ly link) is
classified as the final site of its chain, which is named in the notes; IDN
names in their ASCII (punycode) form; an HTTP status even when the body
failed.  What is dropped: network events, QUIC/HTTP3, the probe's own
``blocking`` verdict, and the helper's view when it measured another host
than the one classified (a redirecting input).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import gzip
import io
import json
import logging
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from probe.errors import UsageError
from probe.failures import Failure
from probe.helper.protocol import failure, parse_response
from probe.observations import (
    BODY_KEEP,
    Certificate,
    CheckSettings,
    DNSQuery,
    DNSRecord,
    DNSReply,
    DomainObservations,
    EndpointObservation,
    HelperObservation,
    HTTPObservation,
    Origin,
    Redirect,
    TCPObservation,
    TLSObservation,
)
from storage.records import StoredMeasurement, Vantage

log = logging.getLogger(__name__)

TEST_NAME = "web_connectivity"
TH_RESOLVER = "ooni:test-helper"
_NAMESPACE = uuid.UUID("6f1d7c52-3a7e-4d0b-9a51-0b0e5d1c0001")

_RCODES = {
    Failure.DNS_NXDOMAIN: "NXDOMAIN",
    Failure.DNS_SERVFAIL: "SERVFAIL",
    Failure.DNS_REFUSED: "REFUSED",
}


@dataclass(frozen=True)
class ImportResult:
    added: int = 0
    already: int = 0
    skipped: int = 0  # other tests, other countries/domains
    bad: tuple[str, ...] = field(default=())  # "file:line: reason" for unreadable documents


# ------------------------------------------------------------------ reading


MAX_DOCUMENT = 16 * 1024 * 1024  # characters: a measurement is KBs; a bigger line is hostile


def read_documents(path: Path) -> Iterator[tuple[str, Any]]:
    """("file:line", document) for every measurement in a JSON or JSONL file (.gz ok).

    ``-`` reads standard input (gzip recognised by its magic bytes).  JSON
    Lines are streamed, a line at most :data:`MAX_DOCUMENT` long (a longer one
    is skipped as unreadable without being held in memory: a small gzip file
    can expand to gigabytes); a file whose first line is not a whole JSON
    document is read as one JSON document (a measurement or a list of them),
    within the same limit.  Unparseable input yields ``(where, None)`` so the
    caller can report it.
    """
    try:
        with _open_text(path) as stream:
            first = True
            n = 0
            while True:
                line = stream.readline(MAX_DOCUMENT + 1)
                if not line:
                    return
                n += 1
                if len(line) > MAX_DOCUMENT:
                    while line and not line.endswith("\n"):  # skip the rest, bounded
                        line = stream.readline(MAX_DOCUMENT)
                    yield f"{path}:{n}", None
                    first = False
                    continue
                if not line.strip():
                    continue
                doc = _loads(line)
                if doc is None and first:
                    rest = stream.read(MAX_DOCUMENT - len(line) + 1)
                    whole = _loads(line + rest) if len(line) + len(rest) <= MAX_DOCUMENT else None
                    items = whole if isinstance(whole, list) else [whole]
                    for i, item in enumerate(items, start=1):
                        yield f"{path}:item {i}", item
                    return
                first = False
                yield f"{path}:{n}", doc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc


def _open_text(path: Path) -> Any:
    if str(path) == "-":
        raw: Any = sys.stdin.buffer
        if raw.peek(2)[:2] == b"\x1f\x8b":
            raw = gzip.GzipFile(fileobj=raw)
        return io.TextIOWrapper(raw, encoding="utf-8")
    opener: Any = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# ------------------------------------------------------------------ mapping


def measurement_id(doc: Mapping[str, Any]) -> str:
    """A stable UUID for one OONI measurement (idempotent imports)."""
    ident = doc.get("measurement_uid")
    if not ident and doc.get("report_id"):
        ident = "|".join(
            str(doc.get(k, ""))
            for k in ("report_id", "input", "measurement_start_time", "probe_asn")
        )
    if not ident:  # no identity of its own (e.g. an empty report_id): its content is one
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
        ident = "content:" + _sha256(canonical.encode())
    return str(uuid.uuid5(_NAMESPACE, str(ident)))


def vantage_of(doc: Mapping[str, Any]) -> Vantage:
    asn_text = str(doc.get("probe_asn") or "AS0")
    try:
        asn: int | None = int(asn_text.upper().removeprefix("AS"))
    except ValueError:
        asn = None
    cc = str(doc.get("probe_cc") or "").upper()
    return Vantage(
        name=f"ooni:{asn_text}",
        country=cc if len(cc) == 2 and cc.isalpha() and cc != "ZZ" else None,
        asn=asn,
        network=_str(doc.get("probe_network_name")),
    )


def to_observations(doc: Mapping[str, Any], platform: str | None) -> DomainObservations:
    """Map one Web Connectivity measurement onto our observation records."""
    url = str(doc.get("input") or "")
    parts = urlsplit(url)
    asked = _ascii(parts.hostname or "")
    if not asked:
        raise ValueError("no input URL")
    keys: Mapping[str, Any] = doc.get("test_keys") or {}
    requests = list(reversed(_list(keys.get("requests"))))  # OONI lists the last request first
    chain = _chain(requests, asked)
    domain = chain[-1]
    final = urlsplit(_request_url(requests[-1]) if requests else url)
    scheme = (final.scheme or parts.scheme).lower() or "http"
    port = (final.port if final.hostname else parts.port) or (443 if scheme == "https" else 80)
    started = _start_time(doc)

    raw_queries = [
        q for q in _list(keys.get("queries")) if _ascii(str(q.get("hostname") or "")) == domain
    ]
    vantage_dns = tuple(q for raw in raw_queries for q in _vantage_queries(raw, domain))
    doh_dns = tuple(q for raw in raw_queries for q in _doh_queries(raw, domain))
    origins: dict[str, set[Origin]] = {}
    for q in (*vantage_dns, *doh_dns):
        for address in q.addresses:
            origins.setdefault(address, set()).add(q.origin)

    tls_by_address: dict[tuple[str, int], TLSObservation] = {}
    for raw in _list(keys.get("tls_handshakes")):
        tls = _tls(raw, domain, port)
        if tls is not None and tls.server_name == domain:
            tls_by_address.setdefault((tls.address, tls.port), tls)
    endpoints: list[EndpointObservation] = []
    http_attached = False
    for raw in _list(keys.get("tcp_connect")):
        ip, tcp_port = str(raw.get("ip") or ""), _int(raw.get("port")) or port
        if not ip or any(e.address == ip and e.port == tcp_port for e in endpoints):
            continue
        if domain != asked and ip not in origins:
            continue  # an address of another host of the redirect chain
        status = raw.get("status") or {}
        tcp = TCPObservation(
            address=ip,
            port=tcp_port,
            t_ms=_ms(raw.get("t0", raw.get("t"))),
            elapsed_ms=_elapsed(raw),
            failure=None
            if status.get("success")
            else failure(status.get("failure")) or Failure.UNKNOWN_ERROR,
        )
        tls = tls_by_address.get((ip, tcp_port)) if tcp_port == 443 or scheme == "https" else None
        http = None
        usable = tcp.ok and (scheme == "http" or (tls is not None and tls.ok))
        if requests and not http_attached and usable and tcp_port == port:
            http = _http(requests, ip, tcp_port, domain, scheme)
            http_attached = True
        endpoints.append(
            EndpointObservation(
                address=ip,
                port=tcp_port,
                origins=tuple(sorted(origins.get(ip, {"vantage"}))),
                tcp=tcp,
                tls=tls,
                http=http,
            )
        )
    resolver = next((q.resolver for q in vantage_dns), "ooni:system")
    helper = _helper(keys, url, same_host=domain == asked)
    return DomainObservations(
        domain=domain,
        input=url,
        platform=platform,
        started_at=started,
        duration_ms=float(doc.get("test_runtime") or 0) * 1000,
        settings=CheckSettings(
            resolver=resolver,
            control_resolvers=tuple(dict.fromkeys(q.resolver for q in doh_dns)),
            control_sni="",
            control_domains=(),
            timeout_s=0.0,
            helpers=(TH_RESOLVER,) if helper is not None else (),
        ),
        dns=(*vantage_dns, *doh_dns),
        endpoints=tuple(endpoints),
        probe_version=f"{doc.get('software_name', 'ooni')}/{doc.get('software_version', '?')}",
        notes=_notes(doc, chain, raw_queries, helper is None and bool(keys.get("control"))),
        helper=helper,
    )


def _ascii(host: str) -> str:
    """The ASCII (punycode) form of a hostname, as our own checks name domains."""
    from probe.targets import normalize_domain

    try:
        return normalize_domain(host)
    except UsageError:
        return host.strip("[]").rstrip(".").lower()


def _request_url(request: Mapping[str, Any]) -> str:
    return str((request.get("request") or {}).get("url") or "")


def _chain(requests: Sequence[Mapping[str, Any]], asked: str) -> list[str]:
    """The hosts of the redirect chain, in order, starting with the input's."""
    hosts = [asked]
    for request in requests:
        host = _ascii(urlsplit(_request_url(request)).hostname or "")
        if host and host != hosts[-1]:
            hosts.append(host)
    return hosts


def _helper(keys: Mapping[str, Any], url: str, *, same_host: bool) -> HelperObservation | None:
    """The test helper's answer (or its failure) as our helper observation."""
    control = keys.get("control")
    if keys.get("control_failure"):
        fail = failure(keys.get("control_failure")) or Failure.UNKNOWN_ERROR
        tried = (f"{TH_RESOLVER}: {keys.get('control_failure')}",)
        return HelperObservation(TH_RESOLVER, 0.0, 0.0, fail, url=url, tried=tried)
    if not isinstance(control, Mapping) or not control or not same_host:
        return None
    return parse_response(control, helper=TH_RESOLVER, url=url, t_ms=0.0, elapsed_ms=0.0)


def _notes(
    doc: Mapping[str, Any],
    chain: Sequence[str],
    queries: Sequence[Mapping[str, Any]],
    helper_dropped: bool,
) -> tuple[str, ...]:
    notes = [
        f"Imported from OONI {TEST_NAME} (report {doc.get('report_id') or '?'}); "
        f"OONI said blocking={(doc.get('test_keys') or {}).get('blocking')!r}."
    ]
    if len(chain) > 1:
        notes.append(f"The input redirected: {' -> '.join(chain)}; the last site is judged.")
    if helper_dropped:
        notes.append(
            f"OONI's test helper measured {chain[0]}, not {chain[-1]}; its view is not used."
        )
    for raw in queries:
        if _engine(raw) == "udp":
            answers = [a.get("ipv4") or a.get("ipv6") for a in _list(raw.get("answers"))]
            said = ", ".join(filter(None, answers)) or raw.get("failure")
            notes.append(
                f"OONI also asked {raw.get('resolver_address') or 'a UDP resolver'} "
                f"({raw.get('query_type')}): {said} (not used: plain DNS can be rewritten)."
            )
    return tuple(notes)


def _engine(raw: Mapping[str, Any]) -> str:
    """system (getaddrinfo and the like), doh or udp."""
    engine = str(raw.get("engine") or "system").lower()
    if engine in ("doh", "dnsoverhttps") or str(raw.get("resolver_address") or "").startswith(
        "https://"
    ):
        return "doh"
    return "udp" if engine in ("udp", "dnsoverudp", "tcp", "dot") else "system"


def _vantage_queries(raw: Mapping[str, Any], domain: str) -> list[DNSQuery]:
    return _queries(raw, domain, "vantage") if _engine(raw) == "system" else []


def _doh_queries(raw: Mapping[str, Any], domain: str) -> list[DNSQuery]:
    return _queries(raw, domain, "control") if _engine(raw) == "doh" else []


def _queries(raw: Mapping[str, Any], domain: str, origin: Origin) -> list[DNSQuery]:
    qtype = str(raw.get("query_type") or "A").upper()
    if qtype not in ("A", "AAAA", "ANY"):
        return []
    engine = str(raw.get("engine") or "system")
    address = str(raw.get("resolver_address") or "")
    resolver = f"ooni:{engine}" + (f":{address}" if address else "")
    fail = failure(raw.get("failure"))
    t_ms, elapsed = _ms(raw.get("t0", raw.get("t"))), _elapsed(raw)
    answers = _list(raw.get("answers"))
    out = []
    # getaddrinfo lookups are one "ANY" query in OONI; we keep A and AAAA apart.
    wanted = ("A", "AAAA") if qtype == "ANY" else (qtype,)
    for rtype in wanted:
        records = tuple(r for a in answers if (r := _record(a, domain)) and r.rtype == rtype)
        cnames = tuple(r for a in answers if (r := _record(a, domain)) and r.rtype == "CNAME")
        if qtype == "ANY" and rtype == "AAAA" and (fail or not records):
            continue  # a failed getaddrinfo is one failure, reported once (as A)
        if fail is None and not records and qtype == "ANY":
            fail = Failure.DNS_NO_ANSWER
        replies: tuple[DNSReply, ...] = ()
        if fail is None or fail in _RCODES or fail is Failure.DNS_NO_ANSWER:
            replies = (
                DNSReply(
                    rcode=_RCODES.get(fail, "NOERROR") if fail else "NOERROR",
                    records=cnames + records,
                    elapsed_ms=elapsed,
                    source=resolver,
                ),
            )
        out.append(DNSQuery(resolver, origin, domain, rtype, t_ms, elapsed, fail, replies))
    return out


def _record(answer: Any, domain: str) -> DNSRecord | None:
    if not isinstance(answer, Mapping):
        return None
    rtype = str(answer.get("answer_type") or "").upper()
    ttl = _int(answer.get("ttl")) or 0
    if rtype == "A" and answer.get("ipv4"):
        return DNSRecord("A", domain, str(answer["ipv4"]), ttl)
    if rtype == "AAAA" and answer.get("ipv6"):
        return DNSRecord("AAAA", domain, str(answer["ipv6"]), ttl)
    if rtype == "CNAME" and answer.get("hostname"):
        return DNSRecord("CNAME", domain, str(answer["hostname"]), ttl)
    return None


def _tls(raw: Mapping[str, Any], domain: str, port: int) -> TLSObservation | None:
    address = str(raw.get("address") or "")
    if not address:
        return None  # old measurements do not say which endpoint a handshake was with
    ip, tls_port = _split_endpoint(address, port)
    chain = tuple(c for c in (_certificate(x) for x in _list(raw.get("peer_certificates"))) if c)
    return TLSObservation(
        address=ip,
        port=tls_port,
        server_name=str(raw.get("server_name") or domain),
        t_ms=_ms(raw.get("t0", raw.get("t"))),
        elapsed_ms=_elapsed(raw),
        failure=failure(raw.get("failure")),
        version=_str(raw.get("tls_version")),
        cipher=_str(raw.get("cipher_suite")),
        alpn=_str(raw.get("negotiated_protocol")),
        chain=chain,
    )


def _certificate(raw: Any) -> Certificate | None:
    from probe.checks.tls import certificate

    data = raw.get("data") if isinstance(raw, Mapping) else None
    if not isinstance(data, str):
        return None
    try:
        return certificate(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error):
        return None


def _http(
    requests: Sequence[Mapping[str, Any]], ip: str, port: int, domain: str, scheme: str
) -> HTTPObservation:
    from probe.checks.http import extract_title, normalise_headers

    first, last = requests[0], requests[-1]
    redirects = tuple(
        Redirect(code, location)
        for r in requests[:-1]
        if (code := _int((r.get("response") or {}).get("code")))
        and (location := _header(r.get("response") or {}, "location"))
    )
    response = last.get("response") or {}
    body_bytes = _body(response.get("body"))
    body = body_bytes[: BODY_KEEP * 4].decode("utf-8", errors="replace")[:BODY_KEEP]
    headers = normalise_headers(
        (str(p[0]), str(p[1]))
        for p in _list(response.get("headers_list"))
        if isinstance(p, list) and len(p) == 2 and isinstance(p[1], str)
    )
    code = _int(response.get("code")) or None
    fail = failure(last.get("failure"))
    return HTTPObservation(
        url=str((first.get("request") or {}).get("url") or f"{scheme}://{domain}/"),
        address=ip,
        port=port,
        host=domain,
        server_name=domain if scheme == "https" else None,
        t_ms=_ms(first.get("t0", first.get("t"))),
        elapsed_ms=_elapsed(last),
        failure=fail,
        status=code,  # kept when the body then failed: the status line did arrive
        headers=headers,
        title=extract_title(body),
        body=body,
        body_length=len(body_bytes),
        body_sha256=_sha256(body_bytes) if body_bytes else None,
        body_truncated=bool(response.get("body_is_truncated")),
        redirects=redirects,
    )


def _header(response: Mapping[str, Any], name: str) -> str | None:
    for pair in _list(response.get("headers_list")):
        if isinstance(pair, list) and len(pair) == 2 and str(pair[0]).lower() == name:
            return str(pair[1])
    headers = response.get("headers") or {}
    for key, value in headers.items() if isinstance(headers, Mapping) else ():
        if str(key).lower() == name:
            return str(value)
    return None


def _body(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", errors="replace")
    if isinstance(value, Mapping) and value.get("format") == "base64":
        try:
            return base64.b64decode(str(value.get("data") or ""))
        except (ValueError, binascii.Error):
            return b""
    return b""


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _start_time(doc: Mapping[str, Any]) -> dt.datetime:
    text = str(doc.get("measurement_start_time") or "")
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad measurement_start_time {text[:40]!r}") from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _split_endpoint(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _int(rest.lstrip(":")) or default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _int(port) or default_port
    return text, default_port


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, Mapping | list)] if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _ms(seconds: Any) -> float:
    try:
        return float(seconds) * 1000 if seconds is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _elapsed(raw: Mapping[str, Any]) -> float:
    if raw.get("t0") is None or raw.get("t") is None:
        return 0.0
    return max(0.0, _ms(raw.get("t")) - _ms(raw.get("t0")))


# ------------------------------------------------------------------ import


def platform_of(domain: str, platforms: Mapping[str, Sequence[str]]) -> str | None:
    """The platform whose domain list covers ``domain`` (sub-domains included)."""
    for name, domains in platforms.items():
        if any(domain == d or domain.endswith("." + d) for d in domains):
            return name
    return None


def convert(
    documents: Iterable[tuple[str, Any]],
    *,
    country: str | None = None,
    domains: Sequence[str] = (),
    platforms: Mapping[str, Sequence[str]] | None = None,
    bad: list[str] | None = None,
    skipped: list[str] | None = None,
) -> Iterator[StoredMeasurement]:
    """Stored measurements for the Web Connectivity documents that match the filters.

    ``platforms`` maps platform names to their domains (default: the shipped
    profiles); unreadable documents are appended to ``bad``, others to ``skipped``.
    """
    from probe.classify import classify
    from storage.summary import measurement_row

    wanted = {_ascii(d) for d in domains}
    if platforms is None:
        platforms = shipped_platform_domains()
    for where, doc in documents:
        if not isinstance(doc, Mapping):
            if bad is not None:
                bad.append(f"{where}: not a JSON object")
            continue
        if doc.get("test_name") != TEST_NAME:
            if skipped is not None:
                skipped.append(where)
            continue
        if country and str(doc.get("probe_cc") or "").upper() != country.upper():
            if skipped is not None:
                skipped.append(where)
            continue
        try:
            obs = to_observations(doc, None)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            if bad is not None:
                bad.append(f"{where}: {exc}")
            continue
        asked = _ascii(urlsplit(obs.input).hostname or "")
        if wanted and not wanted & {asked, obs.domain}:  # the input's host or the site reached
            if skipped is not None:
                skipped.append(where)
            continue
        obs = dataclasses.replace(obs, platform=platform_of(obs.domain, platforms))
        verdict = classify(obs)
        ident = measurement_id(doc)
        yield StoredMeasurement(
            row=measurement_row(ident, vantage_of(doc), obs, verdict),
            observations=obs,
            verdict=verdict,
        )


def shipped_platform_domains() -> dict[str, tuple[str, ...]]:
    from probe.targets import load_platforms

    return {name: p.domains for name, p in load_platforms().items()}
