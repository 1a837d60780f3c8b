"""OONI's Web Connectivity test-helper protocol: requests, responses, failures.

The request (``POST /``) names a URL and the ``ip:port`` endpoints the probe
resolved; the response carries the helper's own ``dns``, a ``tcp_connect``
and a ``tls_handshake`` entry per endpoint, the ``http_request`` it made
(status and body length ``-1`` on failure), ``ip_info`` and empty
``quic_handshake``/``http3_request``.  Everything here is pure: parsing
validates hostile input and raises :class:`BadRequest`; building turns
observations into the wire format and back.

reachprobe's helper adds ``x_redirects`` (the hops it followed) to
``http_request``; other clients ignore unknown keys, and answers from OONI's
helpers simply lack it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from probe import netaddr
from probe.failures import Failure
from probe.observations import (
    HelperASN,
    HelperEndpoint,
    HelperHTTP,
    HelperObservation,
    Redirect,
)

MAX_ENDPOINTS = 64
MAX_URL = 2048
MAX_HEADERS = 32

# df-007 failure strings (and the Go engine's newer ones) onto our vocabulary.
FAILURES: dict[str, Failure] = {
    "dns_nxdomain_error": Failure.DNS_NXDOMAIN,
    "dns_name_error": Failure.DNS_NXDOMAIN,
    "dns_lookup_error": Failure.DNS_NXDOMAIN,
    "dns_server_misbehaving": Failure.DNS_SERVFAIL,
    "dns_name_failure": Failure.DNS_SERVFAIL,
    "dns_refused_error": Failure.DNS_REFUSED,
    "dns_no_answer": Failure.DNS_NO_ANSWER,
    "android_dns_cache_no_data": Failure.DNS_NO_ANSWER,
    "dns_bogon_error": Failure.DNS_BAD_REPLY,
    "dns_reply_with_wrong_query_id": Failure.DNS_BAD_REPLY,
    "generic_timeout_error": Failure.TIMEOUT,
    "deferred_timeout_error": Failure.TIMEOUT,
    "tcp_timed_out_error": Failure.TIMEOUT,
    "task_timed_out": Failure.TIMEOUT,
    "connection_refused": Failure.CONNECTION_REFUSED,
    "connection_refused_error": Failure.CONNECTION_REFUSED,
    "connection_reset": Failure.CONNECTION_RESET,
    "connection_lost_error": Failure.CONNECTION_RESET,
    "eof_error": Failure.EOF,
    "connection_done": Failure.EOF,
    "response_never_received": Failure.EOF,
    "host_unreachable": Failure.HOST_UNREACHABLE,
    "network_unreachable": Failure.NETWORK_UNREACHABLE,
    "ssl_invalid_hostname": Failure.TLS_INVALID_HOSTNAME,
    "ssl_unknown_authority": Failure.TLS_UNKNOWN_AUTHORITY,
    "ssl_unknown_autority": Failure.TLS_UNKNOWN_AUTHORITY,  # sic, as in df-007
    "ssl_invalid_certificate": Failure.TLS_INVALID_CERTIFICATE,
    "ssl_failed_handshake": Failure.TLS_PROTOCOL_ERROR,
}
# Ours onto the wire: the first OONI name of each, else our own name.
_TO_OONI = {f: name for name, f in reversed(FAILURES.items())}
_TO_OONI[Failure.TLS_EXPIRED_CERTIFICATE] = "ssl_invalid_certificate"


def failure(value: Any) -> Failure | None:
    """Our name for an OONI failure string (None and "" stay None)."""
    if value is None or value == "":
        return None
    text = str(value)
    if text in FAILURES:
        return FAILURES[text]
    if text in Failure._value2member_map_:
        return Failure(text)
    lower = text.lower()  # "unknown_failure: ... connection reset by peer" and the like
    for needle, name in (
        ("reset by peer", Failure.CONNECTION_RESET),
        ("connection refused", Failure.CONNECTION_REFUSED),
        ("no route to host", Failure.HOST_UNREACHABLE),
        ("network is unreachable", Failure.NETWORK_UNREACHABLE),
        ("timed out", Failure.TIMEOUT),
        ("timeout", Failure.TIMEOUT),
        ("eof", Failure.EOF),
    ):
        if needle in lower:
            return name
    return Failure.UNKNOWN_ERROR


def ooni_failure(value: Failure | None) -> str | None:
    return None if value is None else _TO_OONI.get(value, value.value)


class BadRequest(ValueError):
    """A request the helper refuses; the message is safe to send back."""


@dataclass(frozen=True)
class ControlRequest:
    url: str
    host: str  # the URL's host: a lowercase name or an IP literal
    endpoints: tuple[tuple[str, int], ...]  # the probe's (address, port), deduplicated


def parse_request(data: Any, *, max_endpoints: int = MAX_ENDPOINTS) -> ControlRequest:
    """Validate a decoded request body; raises BadRequest naming the first problem."""
    if not isinstance(data, Mapping):
        raise BadRequest("the request must be a JSON object")
    url = data.get("http_request")
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise BadRequest(f"http_request must be an http(s) URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise BadRequest("http_request is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host or port == 0:
        raise BadRequest("http_request must be an http(s) URL with a host")
    if not netaddr.is_ip(host) and not _hostname(host):
        raise BadRequest("http_request has an invalid host name")
    headers = data.get("http_request_headers", {})
    if not isinstance(headers, Mapping) or len(headers) > MAX_HEADERS:
        raise BadRequest(f"http_request_headers must be an object of at most {MAX_HEADERS} keys")
    raw = data.get("tcp_connect", [])
    if not isinstance(raw, list):
        raise BadRequest("tcp_connect must be a list of 'ip:port' strings")
    if len(raw) > max_endpoints:
        raise BadRequest(f"too many endpoints in tcp_connect (at most {max_endpoints})")
    endpoints: dict[tuple[str, int], None] = {}
    for item in raw:
        endpoint = split_endpoint(item) if isinstance(item, str) else None
        if endpoint is None:
            raise BadRequest(f"tcp_connect: {str(item)[:60]!r} is not an 'ip:port' endpoint")
        endpoints[endpoint] = None
    return ControlRequest(url, host.lower(), tuple(endpoints))


def _hostname(host: str) -> bool:
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
        for label in labels
    )


def split_endpoint(text: str) -> tuple[str, int] | None:
    """``1.2.3.4:443`` / ``[::1]:443`` -> (address, port); None when malformed."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            return None  # an IPv6 address must be bracketed
    ip = netaddr.parse(host)
    if ip is None or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return str(ip), int(port_text)


def build_request(url: str, endpoints: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The probe's request, as in the spec's example."""
    from probe.checks.http import USER_AGENT

    return {
        "http_request": url,
        "http_request_headers": {
            "Accept": ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
            "Accept-Language": ["en-US;q=0.8,en;q=0.5"],
            "User-Agent": [USER_AGENT],
        },
        "tcp_connect": [netaddr.endpoint_label(a, p) for a, p in endpoints],
    }


# ------------------------------------------------------------------ responses

IP_INFO_RESOLVER = 1  # the helper resolved it
IP_INFO_PROBE = 2  # the probe sent it
IP_INFO_BOGON = 4
IP_INFO_VALID_FOR_DOMAIN = 8  # TLS with a certificate valid for the domain


def build_response(view: HelperObservation, probe_addresses: Sequence[str]) -> dict[str, Any]:
    """The wire form of a helper's measurement (``view.failure`` must be None)."""
    tcp: dict[str, Any] = {}
    tls: dict[str, Any] = {}
    for e in view.endpoints:
        label = netaddr.endpoint_label(e.address, e.port)
        tcp[label] = {"status": e.tcp_failure is None, "failure": ooni_failure(e.tcp_failure)}
        if e.tls_server_name is not None:
            tls[label] = {
                "server_name": e.tls_server_name,
                "status": e.tls_ok,
                "failure": ooni_failure(e.tls_failure),
            }
    http = view.http
    response: dict[str, Any] = {
        "dns": {"failure": ooni_failure(view.dns_failure), "addrs": list(view.dns_addresses)},
        "tcp_connect": tcp,
        "tls_handshake": tls,
        "quic_handshake": {},
        "http_request": _http_json(http),
        "http3_request": None,
    }
    info = _ip_info(view, probe_addresses)
    if info:
        response["ip_info"] = info
    return response


def _http_json(http: HelperHTTP | None) -> dict[str, Any]:
    if http is None:
        return {
            "body_length": -1,
            "failure": "unknown_failure",
            "title": "",
            "headers": {},
            "status_code": -1,
            "discovered_h3_endpoint": "",
        }
    return {
        "body_length": -1 if http.body_length is None else http.body_length,
        "discovered_h3_endpoint": "",
        "failure": ooni_failure(http.failure),
        "title": http.title or "",
        "headers": dict(http.headers),
        "status_code": -1 if http.status is None else http.status,
        "x_redirects": [{"status": r.status, "location": r.location} for r in http.redirects],
    }


def _ip_info(view: HelperObservation, probe_addresses: Sequence[str]) -> dict[str, Any]:
    asn = {a.address: a.asn for a in view.asns}
    if not asn:
        return {}  # no ASN database: omitted, not faked
    valid = {e.address for e in view.endpoints if e.tls_ok}
    info: dict[str, Any] = {}
    for address in dict.fromkeys([*view.dns_addresses, *probe_addresses]):
        flags = (
            (IP_INFO_RESOLVER if address in view.dns_addresses else 0)
            | (IP_INFO_PROBE if address in probe_addresses else 0)
            | (IP_INFO_BOGON if netaddr.is_bogon(address) else 0)
            | (IP_INFO_VALID_FOR_DOMAIN if address in valid else 0)
        )
        info[address] = {"asn": asn.get(address, 0), "flags": flags}
    return info


def parse_response(
    data: Any, *, helper: str, url: str, t_ms: float, elapsed_ms: float
) -> HelperObservation:
    """A helper's answer as observations; raises BadRequest when it is not one.

    Lenient where the spec is (missing sections stay empty), strict on
    types: a hostile helper cannot inject anything but data.
    """
    if not isinstance(data, Mapping):
        raise BadRequest("the helper's answer is not a JSON object")
    dns = _map(data.get("dns"))
    addrs = [a for a in _seq(dns.get("addrs")) if isinstance(a, str) and netaddr.is_ip(a)]
    tls = _map(data.get("tls_handshake"))
    endpoints: list[HelperEndpoint] = []
    tcp = _map(data.get("tcp_connect"))
    for label, result in list(tcp.items())[: MAX_ENDPOINTS * 4]:
        where = split_endpoint(str(label))
        if where is None or not isinstance(result, Mapping):
            continue
        handshake = _map(tls.get(label)) if label in tls else None
        tcp_failure = _status_failure(result)
        endpoints.append(
            HelperEndpoint(
                where[0],
                where[1],
                tcp_failure,
                _text(handshake.get("server_name")) or "" if handshake else None,
                _status_failure(handshake) if handshake else None,
            )
        )
    info = _map(data.get("ip_info"))
    asns = tuple(
        HelperASN(str(a), n)
        for a, v in info.items()
        if netaddr.is_ip(str(a)) and isinstance(v, Mapping) and (n := _int(v.get("asn")))
    )
    return HelperObservation(
        helper=helper,
        t_ms=t_ms,
        elapsed_ms=elapsed_ms,
        failure=None,
        url=url,
        dns_failure=failure(dns.get("failure")),
        dns_addresses=tuple(dict.fromkeys(str(netaddr.parse(a)) for a in addrs)),
        endpoints=tuple(endpoints),
        http=_parse_http(data.get("http_request")),
        asns=asns,
    )


def _status_failure(result: Mapping[str, Any]) -> Failure | None:
    fail = failure(result.get("failure"))
    if fail is None and result.get("status") is not True:
        return Failure.UNKNOWN_ERROR
    return fail


def _parse_http(raw: Any) -> HelperHTTP | None:
    if not isinstance(raw, Mapping):
        return None
    status = _int(raw.get("status_code"))
    length = _int(raw.get("body_length"))
    headers = _map(raw.get("headers"))
    hops = tuple(
        Redirect(code, location[:MAX_URL])
        for hop in _seq(raw.get("x_redirects"))[:20]
        if isinstance(hop, Mapping)
        and (code := _int(hop.get("status")))
        and isinstance(location := hop.get("location"), str)
    )
    return HelperHTTP(
        failure=failure(raw.get("failure")),
        status=status if status is not None and status > 0 else None,
        body_length=length if length is not None and length >= 0 else None,
        title=(_text(raw.get("title")) or None),
        headers=tuple((str(k)[:100], str(v)[:512]) for k, v in list(headers.items())[:MAX_HEADERS]),
        redirects=hops,
    )


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""
