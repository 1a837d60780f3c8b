"""The helper server attacked and used: limits, refusals, and real measurements
of loopback targets (a slow one, a hostile one, one with its own bad certificate)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

with warnings.catch_warnings():  # Starlette 1.x nags about httpx; its TestClient still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from probe.checks.dns import parse_resolver
from probe.helper.measure import HelperSettings
from probe.helper.server import Limits, create_app
from tests.probe.checks import dnsserver as ds
from tests.probe.checks.httpserver import HTTPTestServer

NAME = "example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def resolver() -> Iterator[str]:
    with ds.serve_in_thread({NAME: ds.answer("127.0.0.1"), "gone.test": ds.NXDOMAIN}) as server:
        yield server.spec


def settings(resolver: str, ca_file: str | None = None, **kw: Any) -> HelperSettings:
    base: dict[str, Any] = {"resolver": parse_resolver(resolver), "timeout": 2.0,
                            "ca_bundle": ca_file, "allow_loopback": True}  # fmt: skip
    return HelperSettings(**{**base, **kw})


def client(s: HelperSettings, **kw: Any) -> TestClient:
    return TestClient(create_app(s, **kw), raise_server_exceptions=False)


def ask(c: TestClient, url: str, endpoints: list[str], **kw: Any) -> Any:
    return c.post("/", json={"http_request": url, "tcp_connect": endpoints}, **kw)


def test_measures_like_the_spec_says(resolver: str, ca: trustme.CA, ca_file: str) -> None:
    with HTTPTestServer(ca=ca, names=(NAME,), root="/page?size=1256&title=Example+Domain") as site:
        url = f"https://{NAME}:{site.port}/"
        reply = ask(client(settings(resolver, ca_file)), url, [f"127.0.0.1:{site.port}"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["dns"] == {"failure": None, "addrs": ["127.0.0.1"]}
    endpoint = f"127.0.0.1:{site.port}"
    assert body["tcp_connect"][endpoint] == {"status": True, "failure": None}
    assert body["tls_handshake"][endpoint] == {"server_name": NAME, "status": True, "failure": None}
    http = body["http_request"]
    assert (http["status_code"], http["title"], http["failure"]) == (200, "Example Domain", None)
    assert http["body_length"] > 1000
    assert "ip_info" not in body  # no ASN database given


def test_the_sites_own_bad_certificate_is_reported(resolver: str, ca: trustme.CA) -> None:
    with HTTPTestServer(ca=ca, names=("other.test",), root="/page") as site:
        url = f"https://{NAME}:{site.port}/"
        body = ask(client(settings(resolver, None)), url, []).json()  # CA not trusted either
    tls = body["tls_handshake"][f"127.0.0.1:{site.port}"]
    assert tls["status"] is False and tls["failure"].startswith("ssl_")
    assert body["http_request"]["status_code"] == -1 and body["http_request"]["body_length"] == -1


def test_nxdomain_from_the_helper(resolver: str) -> None:
    body = ask(client(settings(resolver)), "https://gone.test/", []).json()
    assert body["dns"] == {"failure": "dns_nxdomain_error", "addrs": []}
    assert body["tcp_connect"] == {}


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.1.2.3", "169.254.1.1", "0.0.0.0"]
)
def test_private_loopback_and_mapped_addresses_are_never_dialled(
    resolver: str, address: str
) -> None:
    with HTTPTestServer(root="/page") as site:
        label = f"[{address}]:{site.port}" if ":" in address else f"{address}:{site.port}"
        host = f"[{address}]" if ":" in address else address
        strict = settings(resolver, allow_loopback=False)
        reply = ask(client(strict), f"http://{host}:{site.port}/", [label])
        time.sleep(0.05)
        assert site.connections == 0
    assert reply.status_code == 200
    body = reply.json()
    assert body["tcp_connect"] == {} and body["tls_handshake"] == {}
    assert body["http_request"]["status_code"] == -1


def test_a_name_resolving_to_loopback_is_not_fetched(resolver: str) -> None:
    with HTTPTestServer(root="/page") as site:
        body = ask(
            client(settings(resolver, allow_loopback=False)), f"http://{NAME}:{site.port}/", []
        ).json()
        assert site.connections == 0
    assert body["dns"]["addrs"] == ["127.0.0.1"] and body["tcp_connect"] == {}


@pytest.mark.parametrize("inside", ["10.255.255.1", "[::ffff:10.255.255.1]", "169.254.169.254"])
def test_a_redirect_into_private_space_is_not_followed(resolver: str, inside: str) -> None:
    """A public-looking first hop cannot bounce the helper into its own network."""
    with HTTPTestServer(root=f"/redirect?to=http://{inside}/latest/") as site:
        body = ask(client(settings(resolver)), f"http://127.0.0.1:{site.port}/", []).json()
    http = body["http_request"]
    assert http["failure"] == "address_unusable" and http["status_code"] == -1
    assert [hop["location"] for hop in http["x_redirects"]] == [f"http://{inside}/latest/"]


def test_a_slow_target_is_cut_at_the_helpers_deadline(resolver: str) -> None:
    with HTTPTestServer(root="/hang") as site:
        start = time.monotonic()
        body = ask(
            client(settings(resolver, timeout=1.0)), f"http://127.0.0.1:{site.port}/", []
        ).json()
        elapsed = time.monotonic() - start
    assert body["http_request"]["failure"] == "generic_timeout_error"
    assert elapsed < 3.0


@pytest.mark.parametrize("behaviour", ["/garbage", "/rst", "/endless", "/headers?n=5000", "/loop"])
def test_a_hostile_target_becomes_a_failure(resolver: str, behaviour: str) -> None:
    with HTTPTestServer(root=behaviour) as site:
        start = time.monotonic()
        reply = ask(client(settings(resolver, timeout=1.5)), f"http://127.0.0.1:{site.port}/", [])
        assert time.monotonic() - start < 4.0
    assert reply.status_code == 200
    http = reply.json()["http_request"]
    assert http["failure"] is not None or http["body_length"] <= 1024 * 1024


def test_oversized_malformed_and_wrong_requests(resolver: str) -> None:
    c = client(settings(resolver))
    big = c.post("/", content=b"{" + b" " * (70 * 1024) + b"}",
                 headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and "larger" in big.json()["error"]
    assert c.post("/", content=b"{not json").status_code == 400
    bad = c.post("/", json={"http_request": "https://x.com/", "tcp_connect": ["1.2.3.4:1"] * 100})
    assert bad.status_code == 400 and "too many" in bad.json()["error"]
    assert c.get("/").status_code == 405 and "error" in c.get("/").json()
    assert c.post("/other", json={}).status_code == 404
    few = client(settings(resolver), limits=Limits(max_endpoints=2))
    assert ask(few, "http://x.test/", ["1.2.3.4:1", "1.2.3.4:2", "1.2.3.4:3"]).status_code == 400


def test_tokens_and_rate_limit(resolver: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="probe.helper")
    c = client(settings(resolver), tokens=["s3cret-token"], limits=Limits(per_client=3))
    assert ask(c, "https://gone.test/", []).status_code == 401
    wrong = {"authorization": "Bearer someone-elses"}
    assert ask(c, "https://gone.test/", [], headers=wrong).status_code == 401
    good = {"authorization": "Bearer s3cret-token"}
    assert ask(c, "https://gone.test/", [], headers=good).status_code == 200
    codes = [ask(c, "https://gone.test/", [], headers=good).status_code for _ in range(3)]
    assert codes[-1] == 429
    assert "s3cret" not in caplog.text and "someone" not in caplog.text


def test_bad_options_fail_in_one_line(tmp_path: Path) -> None:
    from probe.errors import UsageError
    from probe.helper.asn import RangeTable, open_database

    with pytest.raises(UsageError, match="no such file"):
        open_database(str(tmp_path / "missing.tsv"))
    garbage = tmp_path / "asn.mmdb"
    garbage.write_bytes(b"not a MaxMind database" * 10)
    with pytest.raises(UsageError, match="cannot read ASN database"):
        open_database(str(garbage))
    broken = tmp_path / "broken.tsv"
    broken.write_text("not\ta range\n")
    with pytest.raises(UsageError, match=r"broken\.tsv:1"):
        open_database(str(broken))
    table = tmp_path / "ip2asn.tsv"
    table.write_text(
        "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n"
        "1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n"
        "2606:4700::\t2606:4700:ffff:ffff:ffff:ffff:ffff:ffff\t13335\tUS\tCF\n"
    )
    db = RangeTable.from_tsv(str(table))
    assert db.lookup("1.0.0.7") == 13335 and db.lookup("1.0.2.1") is None
    assert db.lookup("2606:4700::1") == 13335 and db.lookup("9.9.9.9") is None


def test_ip_info_with_an_asn_database(resolver: str, tmp_path: Path) -> None:
    from probe.helper.asn import RangeTable

    table = tmp_path / "ip2asn.tsv"
    table.write_text("127.0.0.0\t127.255.255.255\t64500\tZZ\tLAB\n")
    s = settings(resolver, asn=RangeTable.from_tsv(str(table)))
    with HTTPTestServer(root="/page") as site:
        body = ask(client(s), f"http://{NAME}:{site.port}/", [f"127.0.0.2:{site.port}"]).json()
    assert body["ip_info"]["127.0.0.1"] == {"asn": 64500, "flags": 1 | 4}  # resolved, bogon
    assert body["ip_info"]["127.0.0.2"] == {"asn": 64500, "flags": 2 | 4}  # the probe's, bogon
