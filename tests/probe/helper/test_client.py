"""The probe's side over real sockets: a helper served by uvicorn, a dead one,
a hanging one and a hostile one, each within the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from probe.checks.dns import parse_resolver
from probe.errors import UsageError
from probe.failures import Failure
from probe.helper.client import ask, check_url
from probe.helper.measure import HelperSettings
from probe.helper.server import create_app
from tests.probe.checks import dnsserver as ds
from tests.probe.checks.httpserver import HTTPTestServer


@pytest.fixture(scope="module")
def helper_url() -> Iterator[str]:
    """A real helper: uvicorn on a loopback socket, in a thread."""
    import uvicorn

    with ds.serve_in_thread({}) as dns:
        settings = HelperSettings(
            resolver=parse_resolver(dns.spec), timeout=2.0, allow_loopback=True
        )
        sock = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
        server.should_exit = True
        thread.join(timeout=5)


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def run(helpers: list[str], url: str, endpoints: list[tuple[str, int]], timeout: float = 3.0):  # type: ignore[no-untyped-def]
    return asyncio.run(ask(helpers, url, endpoints, timeout=timeout, t0=time.monotonic()))


def test_asks_a_real_helper(helper_url: str) -> None:
    with HTTPTestServer(root="/page?title=Hello") as site:
        view = run([helper_url], f"http://127.0.0.1:{site.port}/", [("127.0.0.1", site.port)])
    assert view.ok, view.tried
    assert view.endpoint("127.0.0.1", site.port) is not None
    assert view.http is not None and view.http.status == 200 and view.http.title == "Hello"
    assert view.saw_site is True and view.helper == helper_url


def test_the_next_helper_when_one_is_down(helper_url: str) -> None:
    dead = closed_port()
    with HTTPTestServer(root="/page") as site:
        view = run([dead, helper_url], f"http://127.0.0.1:{site.port}/", [])
    assert view.ok and view.helper == helper_url
    assert view.tried == (f"{dead}: connection_refused",)


def test_a_hanging_helper_costs_no_more_than_the_deadline() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        start = time.monotonic()
        view = run([f"http://127.0.0.1:{listener.getsockname()[1]}/"], "https://x.test/", [], 1.0)
        elapsed = time.monotonic() - start
    finally:
        listener.close()
    assert view.failure is Failure.TIMEOUT and not view.ok
    assert elapsed < 1.0 + 0.5


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n", "HTTP 500"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!", "not JSON"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 3000000\r\n\r\n" + b" " * 3_000_000, "larger"),
    ],
)
def test_a_hostile_helper_is_a_failure_not_a_crash(answer: bytes, complaint: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            request = b""
            while not request.endswith(b"]}"):  # the whole request, or closing sends a RST
                request += conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        view = run([f"http://127.0.0.1:{listener.getsockname()[1]}/"], "https://x.test/", [])
    finally:
        listener.close()
        thread.join(timeout=2)
    assert not view.ok and view.failure is Failure.HTTP_PROTOCOL_ERROR
    assert complaint in view.tried[0]


@pytest.mark.parametrize("bad", ["ftp://h/", "helper.example", "https://", "http://[::1/"])
def test_bad_helper_urls_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid helper"):
        check_url(bad)
