"""OONI import fidelity: what OONI measured is carried, so imported measurements
are judged as well as our own.  Fixtures follow ts-017 and df-001/002/005/006's
field descriptions; each asserts verdict, methods and trigger."""

from __future__ import annotations

import copy
from typing import Any

from collectors.ooni import convert, measurement_id, to_observations
from probe.classify import classify
from probe.failures import Failure
from probe.verdict import Method, Status, Trigger
from tests.collectors.test_ooni import BASE, IP

BITLY = "67.199.248.10"
IDN = "пример.испытание"
IDN_ASCII = "xn--e1afmkfd.xn--80akhbyknj4f"


def doc(**keys: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d["test_keys"].update(keys)
    return d


def query(
    host: str,
    *ips: str,
    engine: str = "getaddrinfo",
    qtype: str = "ANY",
    failure: str | None = None,
    resolver: str = "",
) -> dict[str, Any]:
    answers = [
        {
            "answer_type": "AAAA" if ":" in ip else "A",
            "ipv6" if ":" in ip else "ipv4": ip,
            "ttl": None,
        }
        for ip in ips
    ]
    return {
        "answers": answers,
        "engine": engine,
        "failure": failure,
        "hostname": host,
        "query_type": qtype,
        "resolver_address": resolver,
        "t0": 0.0,
        "t": 0.02,
    }


def tcp(ip: str, port: int = 443, failure: str | None = None) -> dict[str, Any]:
    return {
        "ip": ip,
        "port": port,
        "t0": 0.1,
        "t": 0.2,
        "status": {"failure": failure, "success": failure is None, "blocked": False},
    }


def tls(ip: str, name: str, failure: str | None = None) -> dict[str, Any]:
    return {
        "address": f"{ip}:443",
        "server_name": name,
        "failure": failure,
        "t0": 0.2,
        "t": 0.3,
        "tls_version": "" if failure else "TLSv1.3",
        "peer_certificates": [],
    }


def request(
    url: str,
    *,
    code: int = 0,
    location: str | None = None,
    body: str = "",
    failure: str | None = None,
) -> dict[str, Any]:
    headers = [["Location", location]] if location else [["Content-Type", "text/html"]]
    response = {"code": code, "headers_list": headers, "body": body} if code else None
    return {
        "failure": failure,
        "request": {"url": url, "method": "GET"},
        "response": response,
        "t0": 0.3,
        "t": 0.5,
    }


def control(
    *ips: str,
    tcp_ok: bool = True,
    tls_failure: str | None = None,
    status: int = 200,
    dns_failure: str | None = None,
) -> dict[str, Any]:
    ok = {"status": tcp_ok, "failure": None if tcp_ok else "generic_timeout_error"}
    return {
        "dns": {"failure": dns_failure, "addrs": list(ips)},
        "tcp_connect": {f"{ip}:443": ok for ip in ips},
        "tls_handshake": {
            f"{ip}:443": {
                "server_name": "x.com",
                "status": tls_failure is None,
                "failure": tls_failure,
            }
            for ip in ips
        },
        "http_request": {
            "status_code": status,
            "body_length": 5000 if status > 0 else -1,
            "title": "X",
            "headers": {},
            "failure": None if status > 0 else "generic_timeout_error",
        },
    }


def judged(d: dict[str, Any]) -> tuple[Status, tuple[Method, ...], Trigger | None]:
    verdict = classify(to_observations(d, None))
    return verdict.status, verdict.blocking, verdict.trigger


def test_control_key_becomes_the_helper_and_says_down() -> None:
    """OONI's helper could not connect either: the site is down, not IP-blocked."""
    d = doc(
        queries=[query("x.com", IP)],
        tcp_connect=[tcp(IP, failure="generic_timeout_error")],
        tls_handshakes=[],
        requests=[request("https://x.com/", failure="generic_timeout_error")],
        control=control(IP, tcp_ok=False, status=-1),
    )
    assert judged(d) == (Status.DOWN, (), None)
    d["test_keys"]["control"] = control(IP)  # the helper connected: blocking
    assert judged(d) == (Status.BLOCKED, (Method.TCP_TIMEOUT,), Trigger.IP)


def test_control_failure_is_kept_and_said() -> None:
    d = doc(control={}, control_failure="generic_timeout_error")
    obs = to_observations(d, None)
    assert obs.helper is not None and obs.helper.failure is Failure.TIMEOUT
    verdict = classify(obs)
    assert verdict.status is Status.ACCESSIBLE
    assert any("No control helper answered" in r for r in verdict.notes)


def test_only_the_system_resolver_is_the_vantage() -> None:
    """getaddrinfo is the vantage; DoH is control evidence; UDP to 8.8.8.8 is a note."""
    d = doc(
        queries=[
            query("x.com", "10.10.34.36"),  # the ISP's poisoned answer
            query("x.com", "10.10.34.36", engine="udp", qtype="A", resolver="8.8.8.8:53"),
            query("x.com", IP, engine="doh", qtype="A", resolver="https://dns.google/dns-query"),
        ],
        tcp_connect=[tcp("10.10.34.36", failure="connection_refused"), tcp(IP)],
        tls_handshakes=[tls(IP, "x.com")],
        requests=[request("https://x.com/", failure="connection_refused")],
        control=control(IP),
    )
    obs = to_observations(d, None)
    assert {q.origin for q in obs.dns} == {"vantage", "control"}
    assert [q.resolver for q in obs.dns if q.origin == "vantage"] == ["ooni:getaddrinfo"]
    assert any("8.8.8.8:53" in n and "not used" in n for n in obs.notes)
    assert judged(d) == (Status.BLOCKED, (Method.DNS_BOGON,), Trigger.DNS)


def test_a_redirecting_input_is_judged_as_the_site_it_reaches() -> None:
    """bit.ly -> x.com, where SNI is reset: x.com is blocked, and the chain is named."""
    d = doc(
        queries=[query("bit.ly", BITLY), query("x.com", IP)],
        tcp_connect=[tcp(BITLY), tcp(IP)],
        tls_handshakes=[tls(BITLY, "bit.ly"), tls(IP, "x.com", failure="connection_reset")],
        requests=list(
            reversed(
                [
                    request("https://bit.ly/3xyz", code=301, location="https://x.com/"),
                    request("https://x.com/", failure="connection_reset"),
                ]
            )
        ),
        control=control(BITLY),  # the helper measured the input's host
    )
    d["input"] = "https://bit.ly/3xyz"
    obs = to_observations(d, None)
    assert obs.domain == "x.com" and obs.input == "https://bit.ly/3xyz"
    assert [e.address for e in obs.endpoints] == [IP]  # bit.ly's address is not x.com's
    assert any("bit.ly -> x.com" in n for n in obs.notes)
    assert obs.helper is None and any("not used" in n for n in obs.notes)
    assert judged(d) == (Status.BLOCKED, (Method.TLS_RESET,), None)


def test_punycode_names_match_whatever_form_ooni_wrote() -> None:
    d = doc(
        queries=[query(IDN, IP)],
        tcp_connect=[tcp(IP)],
        tls_handshakes=[tls(IP, IDN_ASCII)],
        requests=[request(f"https://{IDN_ASCII}/", code=200, body="<title>Пример</title>")],
        control=control(IP),
    )
    d["input"] = f"https://{IDN}/"
    obs = to_observations(d, None)
    assert obs.domain == IDN_ASCII and obs.dns[0].qname == IDN_ASCII
    assert obs.endpoints[0].tls is not None
    assert judged(d) == (Status.ACCESSIBLE, (), None)


def test_http_status_is_kept_when_the_body_failed() -> None:
    d = doc(
        requests=[request("https://x.com/", code=200, failure="connection_reset")],
    )
    obs = to_observations(d, None)
    http = obs.endpoints[0].http
    assert http is not None and http.status == 200 and http.failure is Failure.CONNECTION_RESET
    assert judged(d) == (Status.BLOCKED, (Method.HTTP_RESET,), None)


def test_empty_report_ids_do_not_collide() -> None:
    one, two = doc(), doc(requests=[request("https://x.com/", failure="connection_reset")])
    for d in (one, two):
        d["report_id"] = ""
    assert measurement_id(one) != measurement_id(two)
    assert measurement_id(one) == measurement_id(copy.deepcopy(one))  # idempotent
    items = list(convert([("a", one), ("b", two)], platforms={}))
    assert len({i.row.id for i in items}) == 2


def test_helper_nxdomain_with_a_failing_vantage_answer_is_dns_blocking() -> None:
    d = doc(
        queries=[query("x.com", "5.6.7.8")],
        tcp_connect=[tcp("5.6.7.8", failure="generic_timeout_error")],
        tls_handshakes=[],
        requests=[request("https://x.com/", failure="generic_timeout_error")],
        control={
            "dns": {"failure": "dns_nxdomain_error", "addrs": []},
            "tcp_connect": {},
            "http_request": {"status_code": -1, "body_length": -1, "failure": "dns_lookup_error"},
        },
    )
    assert judged(d) == (Status.BLOCKED, (Method.DNS_MISMATCH,), Trigger.DNS)


def test_the_helpers_view_reaches_the_csv_row() -> None:
    saw = doc(control=control(IP))
    failed = doc(control=control(IP, tcp_ok=False, status=-1))
    none = doc(control={})
    none["report_id"] = "other"
    rows = [i.row for i in convert([("a", saw), ("b", failed), ("c", none)], platforms={})]
    assert [r.helper_saw_site for r in rows] == ["true", "false", None]


def test_a_redirecting_input_is_filed_under_the_site_it_reaches() -> None:
    d = doc(
        queries=[query("bit.ly", BITLY), query("x.com", IP)],
        tcp_connect=[tcp(BITLY), tcp(IP)],
        tls_handshakes=[tls(BITLY, "bit.ly"), tls(IP, "x.com")],
        requests=[
            request("https://x.com/", code=200, body="<title>X</title>"),
            request("https://bit.ly/3xyz", code=301, location="https://x.com/"),
        ],
    )
    d["input"] = "https://bit.ly/3xyz"
    [item] = convert([("a", d)], domains=["x.com"], platforms={"x": ("x.com",)})
    assert item.row.domain == "x.com" and item.row.platform == "x"
    assert item.verdict.status is Status.ACCESSIBLE
    assert len(list(convert([("a", d)], domains=["bit.ly"]))) == 1
    assert not list(convert([("a", d)], domains=["t.co"]))
