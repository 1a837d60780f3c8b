"""probe.checks.http against real loopback servers that behave and misbehave."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from probe.checks import httpwire
from probe.checks.http import (
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    TITLE_MAX,
    USER_AGENT,
    body_charset,
    extract_title,
    fetch,
    normalise_headers,
)
from probe.failures import Failure
from probe.observations import BODY_KEEP, BODY_READ_CAP, HTTPObservation, Redirect
from tests.probe.checks.httpserver import (
    ADDRESS,
    HTTPTestServer,
    bomb,
    client_context,
    unverified_context,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def plain() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


@pytest.fixture
def tls(ca: trustme.CA) -> Iterator[HTTPTestServer]:
    with HTTPTestServer(ca=ca) as server:
        yield server


@pytest.fixture
def ports(plain: HTTPTestServer, tls: HTTPTestServer) -> dict[str, int]:
    return {"http": plain.port, "https": tls.port}


@pytest.fixture
def fast_heads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per response head the fast reader read (rather than h11)."""
    read: list[int] = []
    real = httpwire.read_head

    def counted(data: bytes) -> httpwire.Head | None:
        head = real(data)
        if head is not None:
            read.append(1)
        return head

    monkeypatch.setattr(httpwire, "read_head", counted)
    return read


def run(url: str, *, timeout: float = 3.0, **kwargs: Any) -> HTTPObservation:
    kwargs.setdefault("address", ADDRESS)
    kwargs.setdefault("allow_loopback", True)
    t0 = time.monotonic()
    obs = asyncio.run(fetch(url, timeout=timeout, t0=t0, **kwargs))
    assert obs.elapsed_ms < (timeout + 0.5) * 1000
    return obs


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("<html><head><title>Hello</title></head>", "Hello"),
        ("<TITLE lang='en'>\n  Blocked \t by\n order </TITLE>", "Blocked by order"),
        ("<title>Caf&eacute; &amp; &#x41;</title>", "Café & A"),
        ("<titles>no</titles><title>yes</title>", "yes"),
        ("<title></title>", ""),
        ("<title>unterminated", "unterminated"),
        ("<html><body>no title</body></html>", None),
        ("<title", None),
        ("", None),
    ],
)
def test_extract_title(text: str, title: str | None) -> None:
    assert extract_title(text) == title


def test_extract_title_limits() -> None:
    assert extract_title("<title>" + "a" * 1000 + "</title>") == "a" * TITLE_MAX
    assert extract_title(" " * (64 * 1024) + "<title>late</title>") is None
    hostile = "<title" * 50_000  # must stay linear
    start = time.monotonic()
    assert extract_title(hostile) is None
    assert time.monotonic() - start < 0.5


def test_normalise_headers() -> None:
    raw = [("Server", "nginx"), ("X-Long", "v" * 2000)] + [(f"X-{i}", str(i)) for i in range(100)]
    headers = normalise_headers(raw)
    assert len(headers) == MAX_HEADERS
    assert headers[0] == ("server", "nginx")
    assert headers[1] == ("x-long", "v" * MAX_HEADER_VALUE)


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("text/html; charset=ISO-8859-1", "iso8859-1"),
        ('text/html; Charset="windows-1256"', "cp1256"),
        ("text/html; charset=no-such-codec", "utf-8"),
        ("text/html", "utf-8"),
        (None, "utf-8"),
    ],
)
def test_body_charset(content_type: str | None, charset: str) -> None:
    assert body_charset(content_type) == charset


# ------------------------------------------------------------ pages and pinning


def test_page_with_title_and_browser_request(plain: HTTPTestServer, ports: dict[str, int]) -> None:
    obs = run("http://example.test/page?size=5000&title=Hello%20there", ports=ports)
    assert obs.ok and obs.status == 200
    assert obs.title == "Hello there"
    assert obs.body_length == 5000 and not obs.body_truncated
    expected = HTTPTestServer.page(5000, "Hello there")
    assert obs.body_sha256 == hashlib.sha256(expected).hexdigest()
    assert obs.body == expected.decode()
    assert ("content-type", "text/html; charset=utf-8") in obs.headers
    assert (obs.address, obs.port, obs.host, obs.server_name) == (
        ADDRESS,
        plain.port,
        "example.test",
        None,
    )
    assert obs.ttfb_ms is not None and obs.redirects == ()
    seen = plain.requests[-1]
    assert (seen.method, seen.version, seen.host) == ("GET", "HTTP/1.1", "example.test")
    assert seen.header("User-Agent") == USER_AGENT
    assert (seen.header("Accept") or "").startswith("text/html")


def test_body_kept_is_bounded_but_hash_covers_all(ports: dict[str, int]) -> None:
    obs = run("http://example.test/page?size=200000", ports=ports)
    assert obs.body_length == 200000
    assert len(obs.body) == BODY_KEEP
    assert obs.body_sha256 == hashlib.sha256(HTTPTestServer.page(200000)).hexdigest()


def test_charset_from_content_type(ports: dict[str, int]) -> None:
    obs = run("http://example.test/page?charset=iso-8859-1&title=Caf%C3%A9", ports=ports)
    assert obs.title == "Café"


def test_host_header_override(plain: HTTPTestServer, ports: dict[str, int]) -> None:
    obs = run("http://example.test/page", host="control.test", ports=ports)
    assert obs.ok and obs.host == "control.test"
    assert plain.requests[-1].host == "control.test"


def test_explicit_port_wins_and_is_in_host(plain: HTTPTestServer) -> None:
    obs = run(plain.url("/page"), ports={"http": 9})  # port 9 would be refused
    assert obs.ok and obs.port == plain.port
    assert plain.requests[-1].host == f"example.test:{plain.port}"


def test_https_sni_and_host_pinned(
    tls: HTTPTestServer, ca: trustme.CA, ports: dict[str, int]
) -> None:
    obs = run("https://example.test/page", context=client_context(ca), ports=ports)
    assert obs.ok and obs.status == 200 and obs.server_name == "example.test"
    assert (tls.requests[-1].sni, tls.requests[-1].host) == ("example.test", "example.test")


def test_control_sni_is_verified_against_the_sni_name(
    tls: HTTPTestServer, ca: trustme.CA, ports: dict[str, int]
) -> None:
    # The certificate covers control.test: verification follows the SNI, not the Host.
    obs = run(
        "https://example.test/page",
        server_name="control.test",
        context=client_context(ca),
        ports=ports,
    )
    assert obs.ok and obs.server_name == "control.test"
    assert (tls.requests[-1].sni, tls.requests[-1].host) == ("control.test", "example.test")

    obs = run(
        "https://example.test/page",
        server_name="elsewhere.test",
        context=client_context(ca),
        ports=ports,
    )
    assert obs.failure is Failure.TLS_INVALID_HOSTNAME and obs.status is None


def test_untrusted_certificate_verified_vs_unverified(
    tls: HTTPTestServer, ports: dict[str, int]
) -> None:
    stranger = client_context(trustme.CA())
    obs = run("https://example.test/page", context=stranger, ports=ports)
    assert obs.failure is Failure.TLS_UNKNOWN_AUTHORITY and obs.status is None
    assert tls.requests == []

    obs = run("https://example.test/page", context=unverified_context(), ports=ports)
    assert obs.ok and obs.status == 200


def test_loopback_refused_unless_allowed(plain: HTTPTestServer, ports: dict[str, int]) -> None:
    obs = run("http://example.test/page", ports=ports, allow_loopback=False)
    assert obs.failure is Failure.ADDRESS_UNUSABLE and obs.status is None
    obs = run("http://example.test/page", ports=ports, address="0.0.0.0")
    assert obs.failure is Failure.ADDRESS_UNUSABLE
    time.sleep(0.1)
    assert plain.connections == 0


def test_caller_errors_raise() -> None:
    with pytest.raises(ValueError):
        run("http://example.test/", address="example.test")
    with pytest.raises(ValueError):
        run("ftp://example.test/", address="192.0.2.1")


# ------------------------------------------------------------------ redirects


def test_redirect_upgrade_to_https_same_host(
    plain: HTTPTestServer, tls: HTTPTestServer, ca: trustme.CA, ports: dict[str, int]
) -> None:
    obs = run(
        "http://example.test/redirect?to=https://EXAMPLE.test/page%3Ftitle%3DSecure",
        context=client_context(ca),
        ports=ports,
    )
    assert obs.ok and obs.status == 200 and obs.title == "Secure"
    assert obs.redirects == (Redirect(302, "https://example.test/page?title=Secure"),)
    assert obs.port == plain.port and obs.server_name is None  # the request as asked
    assert (tls.requests[-1].sni, tls.requests[-1].host) == ("example.test", "example.test")


def test_plaintext_path_can_stop_at_the_https_upgrade(
    plain: HTTPTestServer, tls: HTTPTestServer, ports: dict[str, int]
) -> None:
    obs = run(
        "http://example.test/redirect?to=https://example.test/page", ports=ports, follow_https=False
    )
    assert obs.ok and obs.status == 302
    assert obs.redirects == (Redirect(302, "https://example.test/page"),)
    assert tls.requests == []  # the https hop was never made


def test_relative_redirect_is_absolutised(ports: dict[str, int]) -> None:
    obs = run("http://example.test/redirect?to=/page&status=301", ports=ports)
    assert obs.status == 200
    assert obs.redirects == (Redirect(301, "http://example.test/page"),)


def test_off_host_redirect_not_followed(plain: HTTPTestServer, ports: dict[str, int]) -> None:
    obs = run("http://example.test/redirect?to=http://blockpage.test/notice", ports=ports)
    assert obs.ok and obs.status == 302
    assert obs.redirects == (Redirect(302, "http://blockpage.test/notice"),)
    assert len(plain.requests) == 1


def test_redirect_loop(tls: HTTPTestServer, ca: trustme.CA, ports: dict[str, int]) -> None:
    obs = run("https://example.test/loop", context=client_context(ca), ports=ports, max_redirects=3)
    assert obs.failure is Failure.HTTP_TOO_MANY_REDIRECTS and obs.status == 302
    assert obs.redirects == (Redirect(302, "https://example.test/loop"),) * 4
    assert len(tls.requests) == 4


def test_deadline_spans_all_hops(ports: dict[str, int]) -> None:
    obs = run("http://example.test/redirect?to=/hang", ports=ports, timeout=1.0)
    assert obs.failure is Failure.TIMEOUT and len(obs.redirects) == 1
    assert obs.elapsed_ms > 900


# ---------------------------------------------------------------------- bodies


def test_gzip_body_is_decoded(ports: dict[str, int]) -> None:
    obs = run("http://example.test/gzip?size=100000&title=Zipped", ports=ports)
    assert obs.ok and obs.title == "Zipped" and obs.body_length == 100000
    assert ("content-encoding", "gzip") in obs.headers


def test_read_cap_truncates_without_failure(ports: dict[str, int]) -> None:
    obs = run("http://example.test/page?size=50000", ports=ports, read_cap=10000)
    assert obs.ok and obs.body_truncated and obs.body_length == 10000
    assert obs.body_sha256 == hashlib.sha256(HTTPTestServer.page(50000)[:10000]).hexdigest()


@pytest.mark.parametrize(("framing", "fast"), [("chunked", 0), ("length", 1), ("close", 1)])
def test_endless_body_memory_bounded(
    framing: str, fast: int, ports: dict[str, int], fast_heads: list[int]
) -> None:
    cap = 1024 * 1024
    gc.collect()
    tracemalloc.start()
    try:
        obs = run(f"http://example.test/endless?framing={framing}", ports=ports, read_cap=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert obs.ok and obs.status == 200
    assert obs.body_truncated and obs.body_length == cap
    assert peak < 8 * cap
    assert fast_heads == [1] * fast  # chunked bodies are h11's, the others the fast reader's


def test_slow_body_timings(ports: dict[str, int]) -> None:
    obs = run("http://example.test/slow?size=65536&rate=102400&delay=0.3", ports=ports)
    assert obs.ok and obs.body_length == 65536 and not obs.body_truncated
    assert obs.ttfb_ms is not None and 250 < obs.ttfb_ms < 1500
    assert obs.body_ms is not None and 400 < obs.body_ms < 2000
    assert obs.throughput_bps is not None and 200_000 < obs.throughput_bps < 1_200_000
    assert obs.elapsed_ms > obs.ttfb_ms + obs.body_ms


def test_t_ms_relative_to_t0(ports: dict[str, int]) -> None:
    t0 = time.monotonic() - 2.0
    obs = asyncio.run(
        fetch(
            "http://example.test/page",
            address=ADDRESS,
            timeout=2,
            t0=t0,
            ports=ports,
            allow_loopback=True,
        )
    )
    assert 2000 <= obs.t_ms < 2500


def test_many_headers_are_capped(ports: dict[str, int]) -> None:
    obs = run("http://example.test/headers?n=1000", ports=ports)
    assert obs.ok and len(obs.headers) == MAX_HEADERS
    assert obs.headers[0] == ("x-header-0", "v" * MAX_HEADER_VALUE)


# -------------------------------------------------------------- misbehaviour


def test_trickle_times_out_keeping_partial_body(
    ports: dict[str, int], fast_heads: list[int]
) -> None:
    obs = run("http://example.test/trickle?interval=0.2", ports=ports, timeout=1.2)
    assert obs.failure is Failure.TIMEOUT and obs.status == 200
    assert obs.body_truncated and 3 <= obs.body_length <= 8
    assert obs.body.startswith("zzz") and obs.body_ms is not None and obs.body_ms > 500
    assert fast_heads == [1]  # read by the fast reader (its head came in one piece)


def test_hang_before_headers(ports: dict[str, int]) -> None:
    obs = run("http://example.test/hang", ports=ports, timeout=1.0)
    assert obs.failure is Failure.TIMEOUT and obs.status is None and obs.elapsed_ms >= 950


def test_garbage_is_protocol_error(ports: dict[str, int]) -> None:
    obs = run("http://example.test/garbage", ports=ports)
    assert obs.failure is Failure.HTTP_PROTOCOL_ERROR and obs.status is None
    assert obs.elapsed_ms < 1000


def test_close_without_response_is_eof(ports: dict[str, int]) -> None:
    assert run("http://example.test/close", ports=ports).failure is Failure.EOF


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_reset(scheme: str, ca: trustme.CA, ports: dict[str, int]) -> None:
    obs = run(f"{scheme}://example.test/rst", context=client_context(ca), ports=ports)
    assert obs.failure is Failure.CONNECTION_RESET and obs.status is None


@pytest.mark.parametrize(
    ("how", "failure"), [("rst", Failure.CONNECTION_RESET), ("close", Failure.EOF)]
)
def test_body_cut_keeps_partial_body(
    how: str, failure: Failure, ports: dict[str, int], fast_heads: list[int]
) -> None:
    obs = run(f"http://example.test/cut?sent=20000&how={how}", ports=ports)
    assert obs.failure is failure and obs.status == 200 and obs.title == "Cut"
    assert obs.body_truncated and obs.body_length == 20000
    assert fast_heads == [1]


def test_headers_too_large_is_protocol_error(ports: dict[str, int]) -> None:
    obs = run("http://example.test/headers?n=20000", ports=ports)
    assert obs.failure is Failure.HTTP_PROTOCOL_ERROR


def test_server_threads_end(plain: HTTPTestServer, ports: dict[str, int]) -> None:
    """The helper itself must not leak: its hung handlers end on close."""
    run("http://example.test/hang", ports=ports, timeout=0.3)
    assert wait_until(lambda: len(plain.requests) == 1)
    start = time.monotonic()
    plain.close()
    assert time.monotonic() - start < 1.0


# ------------------------------------------------------------- hostile bodies

_FETCH_IN_CHILD = """
import asyncio, json, resource, sys, time
from probe.checks.http import fetch
t0, cpu0 = time.monotonic(), time.process_time()
obs = asyncio.run(fetch(sys.argv[1], address="127.0.0.1", timeout=float(sys.argv[2]), t0=t0,
                        allow_loopback=True))
print(json.dumps({"rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "elapsed_s": time.monotonic() - t0, "cpu_s": time.process_time() - cpu0,
                  "status": obs.status, "length": obs.body_length,
                  "truncated": obs.body_truncated, "failure": obs.failure}))
"""


def fetch_in_child(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Fetch in a fresh interpreter: its peak RSS is this fetch's, not the test run's."""
    done = subprocess.run(
        [sys.executable, "-c", _FETCH_IN_CHILD, url, str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def baseline_rss_kib() -> int:
    with HTTPTestServer() as server:
        return int(fetch_in_child(server.url("/page?size=1000"))["rss_kib"])


@pytest.mark.parametrize(
    ("coding", "size"),
    [
        ("gzip,gzip", 1 << 30),  # 1.8 KB on the wire
        ("gzip,gzip,gzip", 1 << 34),
        ("deflate,gzip", 1 << 30),
        ("gzip", 256 << 20),
        ("deflate", 256 << 20),
    ],
)
def test_compression_bomb_is_capped_in_memory_and_time(
    plain: HTTPTestServer, baseline_rss_kib: int, coding: str, size: int
) -> None:
    if coding == "gzip,gzip":
        assert len(bomb(coding.split(","), size)) < 2000
    got = fetch_in_child(plain.url(f"/bomb?coding={coding}&size={size}"), timeout=5.0)
    assert got["failure"] is None and got["truncated"]
    assert got["length"] == BODY_READ_CAP
    assert got["elapsed_s"] < 5.0
    # The read cap is 1 MiB: a few read steps of headroom, never the bomb's size.
    assert got["rss_kib"] - baseline_rss_kib < 40 * 1024, got


@pytest.mark.parametrize("interval", [0, 0.01])
def test_informational_flood_is_a_protocol_error_without_burning_cpu(
    plain: HTTPTestServer, interval: float
) -> None:
    got = fetch_in_child(plain.url(f"/informational?interval={interval}"), timeout=3.0)
    assert got["failure"] == Failure.HTTP_PROTOCOL_ERROR and got["status"] is None, got
    assert got["elapsed_s"] < 3.0
    assert got["cpu_s"] < 1.0, got  # was ~1.1 s of CPU spinning on 1xx until the deadline


def test_a_few_informational_responses_are_fine(ports: dict[str, int]) -> None:
    # 100 Continue then the real answer: what a proxy may legitimately send.
    obs = run("http://example.test/continued", ports=ports)
    assert obs.ok and obs.status == 200 and obs.title == "Continued"


def test_slowloris_headers_end_at_the_deadline(ports: dict[str, int]) -> None:
    obs = run("http://example.test/slowloris?interval=0.1", ports=ports, timeout=1.5)
    assert obs.failure == Failure.TIMEOUT and obs.status is None
