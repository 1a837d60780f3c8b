"""``probe helper serve`` as an operator meets it: bad options end in one line and
exit 2; a real server answers a real probe over a socket and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe.helper.client import ask
from tests.probe.checks.httpserver import HTTPTestServer


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=30
    )


def wait_listening(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "localhost"], "invalid --listen"),
        (["--listen", "127.0.0.1:99999"], "invalid --listen"),
        (["--timeout", "0"], "invalid --timeout"),
        (["--tls-cert", "/nonexistent.pem"], "go together"),
        (["--ca-bundle", "/nonexistent.pem"], "cannot read CA bundle"),
        (["--token-file", "/nonexistent"], "token file /nonexistent: No such file or directory"),
        (["--asn-db", "/nonexistent.tsv"], "cannot read ASN database"),
        (["--resolver", "not-an-ip"], "invalid resolver"),
    ],
)
def test_bad_options_fail_in_one_line(args: list[str], message: str) -> None:
    run = probe("helper", "serve", "--resolver", "127.0.0.1:9", *args)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr


def test_an_address_in_use_is_a_usage_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = probe("helper", "serve", "--resolver", "127.0.0.1:9", "--listen", f"127.0.0.1:{port}")
    assert run.returncode == 2 and "cannot listen on" in run.stderr, run.stderr


def test_serves_a_probe_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The public policy applies: the loopback target is refused, over a real socket."""
    port = free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text("t0ken\n")
    argv = [sys.executable, "-m", "probe", "helper", "serve", "--resolver", "127.0.0.1:9",
            "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens)]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening("127.0.0.1", port)
        with HTTPTestServer(root="/page") as site:
            url = f"http://127.0.0.1:{port}/"
            target = f"http://127.0.0.1:{site.port}/"
            endpoints = [("127.0.0.1", site.port)]
            refused = asyncio.run(ask([url], target, endpoints, timeout=5, t0=time.monotonic()))
            assert not refused.ok and "HTTP 401" in refused.tried[0]
            import os

            os.environ["PROBE_HELPER_TOKEN"] = "t0ken"
            try:
                view = asyncio.run(ask([url], target, endpoints, timeout=5, t0=time.monotonic()))
            finally:
                del os.environ["PROBE_HELPER_TOKEN"]
            assert view.ok, view.tried
            assert view.endpoints == () and site.connections == 0  # loopback: never dialled
            assert view.http is not None and view.http.status is None
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert "t0ken" not in err
    # Without -v too (docs/deploy.md): where it listens, then one line per request.
    assert f"INFO probe.helper: helper listening on http://127.0.0.1:{port} (pid " in err
    requests = [line.split("probe.helper: ")[1] for line in err.splitlines() if " ms" in line]
    assert [r.split()[:2] for r in requests] == [["127.0.0.1", "401"], ["127.0.0.1", "200"]], err


def test_on_an_ipv6_address_it_names_a_url_a_probe_can_use(tmp_path: Path) -> None:
    """`--listen [::1]:PORT` logged 'helper listening on http://::1:PORT', which is no
    URL: given to `probe check --helper` it is refused (a port that is not a number)."""
    import re

    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = int(s.getsockname()[1])
    argv = [sys.executable, "-m", "probe", "helper", "serve", "--resolver", "127.0.0.1:9",
            "--listen", f"[::1]:{port}"]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        said = server.stderr.readline()
        found = re.search(r"helper listening on (\S+) \(pid", said)
        assert found, said
        url = found.group(1)
        wait_listening("::1", port)  # said once bound; listening a moment later
        with HTTPTestServer(root="/page") as site:
            target = f"http://127.0.0.1:{site.port}/"
            view = asyncio.run(
                ask([url], target, [("127.0.0.1", site.port)], timeout=5, t0=time.monotonic())
            )
        assert view.ok, view.tried
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=15)
    assert url == f"http://[::1]:{port}"
