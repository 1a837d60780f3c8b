"""schedules.metrics: series content, scraped over HTTP from the real listener."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import resource
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from probe.verdict import Method, Status, Trigger, Verdict
from schedules.metrics import Metrics
from schedules.metricserver import MAX_CLIENTS
from storage.records import Vantage
from tests.probe import builders


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the listener, keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_listener_serves_verdicts_durations_and_timestamps() -> None:
    metrics = Metrics(Vantage("pi-1", country="PK", network="PTCL"))
    listener = metrics.serve("127.0.0.1", 0)
    try:
        ok = builders.working(builders.ADDR)
        metrics.observe(ok, Verdict(Status.ACCESSIBLE))
        later = builders.replace(ok, started_at=ok.started_at + dt.timedelta(minutes=15))
        blocked = Verdict(Status.BLOCKED, (Method.TLS_RESET, Method.HTTP_RESET), Trigger.SNI)
        metrics.observe(later, blocked)
        metrics.interrupted("x.com")
        metrics.error("x.com", "storage")
        due = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        metrics.scheduled("x.com", due)
        samples = scrape(listener.port)
    finally:
        listener.close()

    x = (("target", "x.com"),)
    assert samples[("probe_success", x)] == 0
    assert samples[("reachprobe_status", (("status", "blocked"), *x))] == 1
    assert samples[("reachprobe_status", (("status", "accessible"), *x))] == 0
    assert samples[("reachprobe_blocking", (("method", "tls.reset"), *x))] == 1
    assert samples[("reachprobe_verdict_total", (("status", "accessible"), *x))] == 1
    assert samples[("reachprobe_verdict_total", (("status", "blocked"), *x))] == 1
    total = samples[("probe_duration_seconds", (("phase", "total"), *x))]
    assert total == later.duration_ms / 1000
    for phase in ("resolve", "connect", "tls", "http"):
        value = samples[("probe_duration_seconds", (("phase", phase), *x))]
        assert not math.isnan(value) and 0 < value <= total
    assert samples[("reachprobe_last_check_timestamp_seconds", x)] == later.started_at.timestamp()
    assert samples[("reachprobe_last_success_timestamp_seconds", x)] == ok.started_at.timestamp()
    assert samples[("reachprobe_next_run_timestamp_seconds", x)] == due.timestamp()
    assert samples[("reachprobe_checks_interrupted_total", x)] == 1
    assert samples[("reachprobe_check_errors_total", (("kind", "storage"), *x))] == 1
    assert samples[("reachprobe_check_duration_seconds_count", ())] == 2
    info = (("country", "PK"), ("network", "PTCL"), ("vantage", "pi-1"))
    assert any(k[0] == "reachprobe_info" and set(info) <= set(k[1]) for k in samples)
    assert samples[("process_resident_memory_bytes", ())] > 0


def test_a_method_that_stops_is_reset_and_failed_phases_are_nan() -> None:
    metrics = Metrics()
    listener = metrics.serve("127.0.0.1", 0)
    try:
        obs = builders.working(builders.ADDR)
        metrics.observe(obs, Verdict(Status.BLOCKED, (Method.DNS_NXDOMAIN,), Trigger.DNS))
        dead = builders.replace(obs, endpoints=())
        metrics.observe(dead, Verdict(Status.ACCESSIBLE))
        samples = scrape(listener.port)
    finally:
        listener.close()
    x = (("target", "x.com"),)
    assert samples[("reachprobe_blocking", (("method", "dns.nxdomain"), *x))] == 0
    assert samples[("probe_success", x)] == 1
    assert math.isnan(samples[("probe_duration_seconds", (("phase", "tls"), *x))])


def test_registries_are_separate() -> None:
    a, b = Metrics(), Metrics()
    a.interrupted("a.example")
    assert (
        b.registry.get_sample_value("reachprobe_checks_interrupted_total", {"target": "a.example"})
        is None
    )
    assert (
        a.registry.get_sample_value("reachprobe_checks_interrupted_total", {"target": "a.example"})
        == 1
    )


@contextlib.contextmanager
def descriptors(n: int) -> Iterator[None]:
    """Room for ``n`` more open files in this process (the soft limit, raised)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(os.listdir("/proc/self/fd")) + n + 64
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def hold_idle_connections(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that never finish a request (every tenth sends half of one)."""
    held = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 10 == 0:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    return held


def test_idle_connections_neither_block_scrapes_nor_add_threads() -> None:
    metrics = Metrics(Vantage("pi-1"))
    listener = metrics.serve("127.0.0.1", 0)
    threads = threading.active_count()
    held: list[socket.socket] = []
    try:
        with descriptors(1100):
            held = hold_idle_connections(listener.port, 1000)
            samples = scrape(listener.port)
            assert any(name == "process_open_fds" for name, _ in samples)
            assert threading.active_count() == threads
            assert len(listener.server._clients) <= MAX_CLIENTS
            for sock in held:
                sock.close()
    finally:
        for sock in held:
            sock.close()
        listener.close()


def test_listener_answers_only_scrapes() -> None:
    listener = Metrics(Vantage("pi-1")).serve("127.0.0.1", 0)
    try:

        def ask(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
                sock.sendall(request)
                reply = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(65536):
                        reply += chunk
                return reply

        assert ask(b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK")
        head = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
        assert ask(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert ask(b"GET /etc/passwd HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
        assert ask(b"GET /" + b"a" * 20000) == b""  # an oversized head is dropped
        assert ask(b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 405")
    finally:
        listener.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=1)
