"""The wire format against the example in OONI's spec (ts-017, "Example control
request and response"), and hostile input to both sides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from probe.failures import Failure
from probe.helper.protocol import (
    BadRequest,
    build_request,
    build_response,
    failure,
    ooni_failure,
    parse_request,
    parse_response,
)
from probe.observations import HelperASN, HelperEndpoint, HelperHTTP, HelperObservation, Redirect

SPEC_REQUEST: dict[str, Any] = json.loads("""{
  "http_request": "https://www.example.com",
  "http_request_headers": {
    "Accept": ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
    "Accept-Language": ["en-US;q=0.8,en;q=0.5"],
    "User-Agent": ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"]
  },
  "tcp_connect": ["93.184.216.34:443", "[2606:2800:220:1:248:1893:25c8:1946]:443"]
}""")

SPEC_RESPONSE: dict[str, Any] = json.loads("""{
    "tcp_connect": {
        "93.184.216.34:443": {"status": true, "failure": null},
        "[2606:2800:220:1:248:1893:25c8:1946]:443": {"status": false, "failure": "invalid_socket"}
    },
    "http_request": {
        "body_length": 1256,
        "failure": null,
        "title": "Example Domain",
        "headers": {"Content-Type": "text/html; charset=UTF-8", "Server": "ECS (dcb/7EC9)"},
        "status_code": 200
    },
    "dns": {"failure": null, "addrs": ["93.184.216.34"]}
}""")
V6 = "2606:2800:220:1:248:1893:25c8:1946"


def test_the_spec_request_parses() -> None:
    request = parse_request(SPEC_REQUEST)
    assert request.host == "www.example.com"
    assert request.endpoints == (("93.184.216.34", 443), (V6, 443))


def test_our_request_has_the_spec_shape() -> None:
    ours = build_request("https://www.example.com", [("93.184.216.34", 443), (V6, 443)])
    assert set(ours) == set(SPEC_REQUEST)
    assert ours["tcp_connect"] == SPEC_REQUEST["tcp_connect"]
    assert set(ours["http_request_headers"]) == set(SPEC_REQUEST["http_request_headers"])
    assert parse_request(json.loads(json.dumps(ours))) == parse_request(SPEC_REQUEST)


def test_the_spec_response_parses() -> None:
    view = parse_response(
        SPEC_RESPONSE, helper="h", url="https://www.example.com", t_ms=1, elapsed_ms=2
    )
    assert view.ok and view.dns_addresses == ("93.184.216.34",) and view.dns_failure is None
    assert view.endpoint("93.184.216.34", 443) == HelperEndpoint("93.184.216.34", 443, None)
    assert view.endpoint(V6, 443) == HelperEndpoint(V6, 443, Failure.UNKNOWN_ERROR)
    assert view.http is not None
    assert (view.http.status, view.http.body_length, view.http.title) == (
        200,
        1256,
        "Example Domain",
    )
    assert view.saw_site is True
    assert view.asns == ()


def test_minus_one_means_failure() -> None:
    data = dict(SPEC_RESPONSE)
    data["http_request"] = {
        "body_length": -1,
        "status_code": -1,
        "failure": "generic_timeout_error",
    }
    view = parse_response(data, helper="h", url="u", t_ms=0, elapsed_ms=0)
    assert view.http == HelperHTTP(Failure.TIMEOUT, None, None)
    assert view.saw_site is False


def test_our_response_round_trips_and_has_every_key() -> None:
    view = HelperObservation(
        helper="",
        t_ms=0.0,
        elapsed_ms=5.0,
        failure=None,
        url="https://x.com/",
        dns_addresses=("104.244.42.1",),
        endpoints=(
            HelperEndpoint("104.244.42.1", 443, None, "x.com", None),
            HelperEndpoint("104.244.42.9", 443, None, "x.com", Failure.TLS_UNKNOWN_AUTHORITY),
            HelperEndpoint("104.244.42.1", 80, Failure.CONNECTION_REFUSED),
        ),
        http=HelperHTTP(
            None,
            200,
            4000,
            "X",
            (("content-type", "text/html"),),
            (Redirect(301, "https://twitter.com/"),),
        ),
        asns=(HelperASN("104.244.42.1", 13414), HelperASN("104.244.42.9", 13414)),
    )
    wire = json.loads(json.dumps(build_response(view, ["104.244.42.9"])))
    assert {"dns", "tcp_connect", "tls_handshake", "http_request", "ip_info"} <= set(wire)
    assert {"quic_handshake", "http3_request"} <= set(wire)
    assert wire["tls_handshake"]["104.244.42.9:443"] == {
        "server_name": "x.com", "status": False, "failure": "ssl_unknown_authority"
    }  # fmt: skip
    assert wire["ip_info"]["104.244.42.1"] == {"asn": 13414, "flags": 1 | 8}
    assert wire["ip_info"]["104.244.42.9"] == {"asn": 13414, "flags": 2}
    back = parse_response(wire, helper="", url="https://x.com/", t_ms=0.0, elapsed_ms=5.0)
    assert back == view


def test_no_asn_database_means_no_ip_info() -> None:
    view = HelperObservation("", 0.0, 0.0, None, "u", dns_addresses=("1.2.3.4",))
    assert "ip_info" not in build_response(view, [])


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([], "JSON object"),
        ({}, "http_request"),
        ({"http_request": "ftp://x.com/"}, "http(s)"),
        ({"http_request": "https://exa mple.com/"}, "invalid host"),
        ({"http_request": "https://x.com/", "tcp_connect": "1.2.3.4:443"}, "list"),
        ({"http_request": "https://x.com/", "tcp_connect": ["1.2.3.4"]}, "endpoint"),
        ({"http_request": "https://x.com/", "tcp_connect": ["::1:443"]}, "endpoint"),
        ({"http_request": "https://x.com/", "tcp_connect": ["1.2.3.4:70000"]}, "endpoint"),
        ({"http_request": "https://x.com/", "tcp_connect": [7]}, "endpoint"),
        ({"http_request": "https://x.com/", "tcp_connect": ["1.2.3.4:1"] * 65}, "too many"),
        ({"http_request": "https://" + "a" * 3000 + ".com/"}, "http_request"),
        ({"http_request": "https://x.com/", "http_request_headers": []}, "headers"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(body: Any, complaint: str) -> None:
    with pytest.raises(BadRequest, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        parse_request(body)


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "x",
        {"tcp_connect": [1, 2]},
        {"tcp_connect": {"not an endpoint": {"status": True}, "1.2.3.4:443": "yes"}},
        {"dns": {"addrs": ["not-an-ip", 5, None]}, "http_request": {"status_code": "200"}},
        {"ip_info": {"1.2.3.4": {"asn": "13414"}}, "http_request": {"x_redirects": [1, {}]}},
    ],
)
def test_a_hostile_answer_yields_only_data(answer: Any) -> None:
    if not isinstance(answer, dict):
        with pytest.raises(BadRequest):
            parse_response(answer, helper="h", url="u", t_ms=0, elapsed_ms=0)
        return
    view = parse_response(answer, helper="h", url="u", t_ms=0, elapsed_ms=0)
    assert view.endpoints == () and view.dns_addresses == () and view.asns == ()
    assert view.http is None or (view.http.status is None and view.http.redirects == ())


def test_failure_names_map_both_ways() -> None:
    for name in Failure:
        assert failure(ooni_failure(name)) in (name, Failure.TLS_INVALID_CERTIFICATE)
    assert failure("unknown_failure: read: connection reset by peer") is Failure.CONNECTION_RESET
    assert failure(None) is None and failure("") is None
