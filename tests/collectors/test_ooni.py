"""OONI import, on fixtures written in OONI's documented format (ts-017, df-001..007)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

from collectors.ooni import convert, read_documents, to_observations, vantage_of
from probe.failures import Failure
from probe.helper.protocol import failure
from storage.records import MeasurementFilter
from storage.store import Store

IP = "104.244.42.1"

BASE: dict[str, Any] = {
    "data_format_version": "0.2.0",
    "input": "https://x.com/",
    "measurement_start_time": "2024-02-18 09:30:00",
    "probe_asn": "AS17557",
    "probe_cc": "PK",
    "probe_network_name": "Pakistan Telecommunication Company Limited",
    "report_id": "20240218T093000Z_webconnectivity_PK_17557_n1_abc",
    "software_name": "ooniprobe-android",
    "software_version": "3.8.5",
    "test_name": "web_connectivity",
    "test_runtime": 2.5,
    "test_keys": {
        "queries": [
            {
                "answers": [{"answer_type": "A", "ipv4": IP, "asn": 13414, "ttl": None}],
                "engine": "getaddrinfo",
                "failure": None,
                "hostname": "x.com",
                "query_type": "ANY",
                "resolver_address": "",
                "t0": 0.01,
                "t": 0.05,
            }
        ],
        "tcp_connect": [
            {
                "ip": IP,
                "port": 443,
                "status": {"blocked": False, "failure": None, "success": True},
                "t0": 0.06,
                "t": 0.1,
            }
        ],
        "tls_handshakes": [
            {
                "address": f"{IP}:443",
                "cipher_suite": "TLS_AES_128_GCM_SHA256",
                "failure": None,
                "negotiated_protocol": "h2",
                "no_tls_verify": False,
                "peer_certificates": [],
                "server_name": "x.com",
                "t0": 0.1,
                "t": 0.3,
                "tls_version": "TLSv1.3",
            }
        ],
        "requests": [
            {
                "failure": None,
                "request": {
                    "method": "GET",
                    "url": "https://x.com/",
                    "headers_list": [["Host", "x.com"]],
                },
                "response": {
                    "body": "<html><head><title>X. It's what's happening</title></head></html>",
                    "body_is_truncated": False,
                    "code": 200,
                    "headers_list": [["Content-Type", "text/html"]],
                },
                "t0": 0.3,
                "t": 0.6,
            }
        ],
        "control_failure": None,
        "control": {
            "dns": {"failure": None, "addrs": [IP]},
            "tcp_connect": {f"{IP}:443": {"status": True, "failure": None}},
            "http_request": {
                "body_length": 60,
                "failure": None,
                "title": "X",
                "status_code": 200,
                "headers": {},
            },
        },
        "blocking": False,
        "accessible": True,
    },
}


def accessible() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def dns_blocked() -> dict[str, Any]:
    doc = accessible()
    keys = doc["test_keys"]
    keys["queries"][0].update(answers=[], failure="dns_nxdomain_error")
    keys["tcp_connect"], keys["tls_handshakes"] = [], []
    keys["requests"] = [
        {"failure": "dns_nxdomain_error", "request": {"url": "https://x.com/"}, "response": None}
    ]
    keys["blocking"] = "dns"
    doc["measurement_start_time"] = "2024-02-18 10:30:00"
    return doc


def tls_reset() -> dict[str, Any]:
    doc = accessible()
    keys = doc["test_keys"]
    keys["tls_handshakes"][0].update(failure="connection_reset", tls_version="", cipher_suite="")
    keys["requests"] = [
        {"failure": "connection_reset", "request": {"url": "https://x.com/"}, "response": None}
    ]
    doc["measurement_start_time"] = "2024-02-18 11:30:00"
    doc["probe_asn"] = "AS45669"
    return doc


def test_mapping_fills_what_ooni_has() -> None:
    obs = to_observations(accessible(), "x")
    assert obs.domain == "x.com" and obs.platform == "x"
    assert obs.started_at.isoformat() == "2024-02-18T09:30:00+00:00"
    assert obs.duration_ms == 2500
    vantage_q = [q for q in obs.dns if q.origin == "vantage"]
    assert [(q.qtype, q.addresses) for q in vantage_q] == [("A", (IP,))]
    assert not [q for q in obs.dns if q.origin == "control"]  # the helper's DNS is its own
    [endpoint] = obs.endpoints
    assert endpoint.tcp is not None and endpoint.tcp.ok and endpoint.origins == ("vantage",)
    assert (
        endpoint.tls is not None and endpoint.tls.version == "TLSv1.3" and endpoint.tls.alpn == "h2"
    )
    assert endpoint.http is not None and endpoint.http.status == 200
    assert endpoint.http.title == "X. It's what's happening"
    helper = obs.helper
    assert helper is not None and helper.ok and helper.dns_addresses == (IP,)
    assert helper.endpoint(IP, 443) is not None and helper.saw_site is True
    assert helper.http is not None and helper.http.status == 200
    v = vantage_of(accessible())
    assert (v.name, v.country, v.asn) == ("ooni:AS17557", "PK", 17557)


def test_failure_strings() -> None:
    assert failure("dns_nxdomain_error") is Failure.DNS_NXDOMAIN
    assert failure("generic_timeout_error") is Failure.TIMEOUT
    assert failure("ssl_unknown_autority") is Failure.TLS_UNKNOWN_AUTHORITY
    assert (
        failure("unknown_failure: read tcp: connection reset by peer") is Failure.CONNECTION_RESET
    )
    assert failure("something new") is Failure.UNKNOWN_ERROR
    assert failure(None) is None


def _write(tmp_path: Path) -> list[Path]:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(accessible(), indent=2))
    lines = [json.dumps(d) for d in (dns_blocked(), tls_reset())]
    other = dict(accessible(), test_name="telegram")
    lines += [json.dumps(other), "{not json"]
    gz = tmp_path / "many.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return [single, gz]


def test_reads_json_and_gzipped_jsonl(tmp_path: Path) -> None:
    single, gz = _write(tmp_path)
    assert len(list(read_documents(single))) == 1
    docs = list(read_documents(gz))
    assert len(docs) == 4 and docs[-1][1] is None and docs[-1][0].endswith(":4")


def test_import_reclassifies_with_our_classifier_and_is_idempotent(tmp_path: Path) -> None:
    files = _write(tmp_path)
    bad: list[str] = []
    skipped: list[str] = []
    docs = [d for f in files for d in read_documents(f)]
    items = list(convert(docs, country="PK", platforms={"x": ("x.com",)}, bad=bad, skipped=skipped))
    assert len(items) == 3 and len(bad) == 1 and len(skipped) == 1
    verdicts = {
        i.row.started_at.hour: (i.verdict.status.value, tuple(m.value for m in i.verdict.blocking))
        for i in items
    }
    assert verdicts[9] == ("accessible", ())
    assert verdicts[10] == ("blocked", ("dns.nxdomain",))
    assert verdicts[11] == ("blocked", ("tls.reset",))
    with Store.open(str(tmp_path / "db.sqlite")) as store:
        assert store.import_measurements(items) == (3, 0)
        assert store.import_measurements(convert(docs, country="PK")) == (0, 3)
        rows = list(store.iter_rows(MeasurementFilter(country="PK")))
    assert {r.vantage.name for r in rows} == {"ooni:AS17557", "ooni:AS45669"}
    assert {r.platform for r in rows} == {"x"}
    assert not list(convert(docs, country="IR"))
    assert not list(convert(docs, domains=["twitter.com"]))
