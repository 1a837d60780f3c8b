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

from probe.failures import Failure
from probe.verdict import Method, Status, Trigger, Verdict
from schedules.metrics import PHASES, Metrics
from schedules.metricserver import MAX_CLIENTS
from storage.records import TimelineEvent, Vantage
from tests.probe import builders

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# The names and label sets of the list (blackbox_exporter's meanings for its
# names, our own reachprobe_* beside them); process_* come from prometheus_client.
EXPORTED = {
    "probe_success": {"target"},
    "probe_duration_seconds": {"target"},
    "probe_dns_lookup_time_seconds": {"target"},
    "reachprobe_phase_duration_seconds": {"target", "phase"},
    "reachprobe_failure": {"target", "phase", "failure"},
    "reachprobe_status": {"target", "status"},
    "reachprobe_blocking": {"target", "method"},
    "reachprobe_verdict_total": {"target", "status"},
    "reachprobe_verdict_created": {"target", "status"},
    "reachprobe_last_check_timestamp_seconds": {"target"},
    "reachprobe_last_success_timestamp_seconds": {"target"},
    "reachprobe_next_run_timestamp_seconds": {"target"},
    "reachprobe_checks_interrupted_total": {"target"},
    "reachprobe_checks_interrupted_created": {"target"},
    "reachprobe_check_errors_total": {"target", "kind"},
    "reachprobe_check_errors_created": {"target", "kind"},
    "reachprobe_check_duration_seconds_bucket": {"le"},
    "reachprobe_check_duration_seconds_count": set(),
    "reachprobe_check_duration_seconds_sum": set(),
    "reachprobe_check_duration_seconds_created": set(),
    "reachprobe_info": {"version", "vantage", "country", "network"},
    "reachprobe_timeline_event_timestamp_seconds": {
        "country",
        "platform",
        "kind",
        "title",
        "certainty",
    },
}


def scrape(port: int) -> Samples:
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
    total = samples[("probe_duration_seconds", x)]  # the whole check, no phase label
    assert total == later.duration_ms / 1000
    for phase in PHASES:
        value = samples[("reachprobe_phase_duration_seconds", (("phase", phase), *x))]
        assert 0 < value <= total
    resolve = samples[("reachprobe_phase_duration_seconds", (("phase", "resolve"), *x))]
    assert samples[("probe_dns_lookup_time_seconds", x)] == resolve
    assert not any(k[0] == "reachprobe_failure" for k in samples)  # nothing failed
    assert samples[("reachprobe_last_check_timestamp_seconds", x)] == later.started_at.timestamp()
    assert samples[("reachprobe_last_success_timestamp_seconds", x)] == ok.started_at.timestamp()
    assert samples[("reachprobe_next_run_timestamp_seconds", x)] == due.timestamp()
    assert samples[("reachprobe_checks_interrupted_total", x)] == 1
    assert samples[("reachprobe_check_errors_total", (("kind", "storage"), *x))] == 1
    assert samples[("reachprobe_check_duration_seconds_count", ())] == 2
    info = (("country", "PK"), ("network", "PTCL"), ("vantage", "pi-1"))
    assert any(k[0] == "reachprobe_info" and set(info) <= set(k[1]) for k in samples)
    assert samples[("process_resident_memory_bytes", ())] > 0


def test_a_method_that_stops_is_reset_and_phases_that_did_not_run_have_no_series() -> None:
    metrics = Metrics()
    listener = metrics.serve("127.0.0.1", 0)
    try:
        obs = builders.working(builders.ADDR)
        metrics.observe(obs, Verdict(Status.BLOCKED, (Method.DNS_NXDOMAIN,), Trigger.DNS))
        dead = builders.replace(obs, endpoints=())
        metrics.observe(dead, Verdict(Status.ACCESSIBLE))
        metrics.scheduled("x.com", None)
        samples = scrape(listener.port)
    finally:
        listener.close()
    x = (("target", "x.com"),)
    assert samples[("reachprobe_blocking", (("method", "dns.nxdomain"), *x))] == 0
    assert samples[("probe_success", x)] == 1
    phases = {dict(k[1]).get("phase") for k in samples if k[0].startswith("reachprobe_phase")}
    assert phases == {"resolve"}  # DNS answered; nothing was dialled
    assert not any(k[0] == "reachprobe_next_run_timestamp_seconds" for k in samples)
    assert not any(math.isnan(value) for value in samples.values())


def test_failure_names_the_phase_and_failure_that_ended_the_check() -> None:
    metrics = Metrics()
    listener = metrics.serve("127.0.0.1", 0)
    try:
        reset = builders.site(
            dns=builders.resolves(builders.ADDR),
            endpoints=(builders.https(tls_failure=Failure.CONNECTION_RESET),),
        )
        metrics.observe(reset, Verdict(Status.BLOCKED, (Method.TLS_RESET,), Trigger.SNI))
        first = scrape(listener.port)
        metrics.observe(builders.working(builders.ADDR), Verdict(Status.ACCESSIBLE))
        second = scrape(listener.port)
    finally:
        listener.close()
    key = (
        "reachprobe_failure",
        (("failure", "connection_reset"), ("phase", "tls"), ("target", "x.com")),
    )
    assert first[key] == 1
    assert not any(
        k[0] == "reachprobe_phase_duration_seconds" and ("phase", "tls") in k[1] for k in first
    )
    assert second[key] == 0  # the alert resolves; the label set stays bounded by the vocabulary


def filled() -> Samples:
    """A scrape of a daemon's metrics after every kind of event, each series present."""
    metrics = Metrics(Vantage("pi-1", country="PK", network="PTCL"))
    listener = metrics.serve("127.0.0.1", 0)
    try:
        blocked = builders.site(
            dns=builders.resolves(builders.ADDR),
            endpoints=(builders.https(tls_failure=Failure.CONNECTION_RESET),),
        )
        metrics.observe(builders.working(builders.ADDR), Verdict(Status.ACCESSIBLE))
        metrics.observe(blocked, Verdict(Status.BLOCKED, (Method.TLS_RESET,), Trigger.SNI))
        metrics.interrupted("x.com")
        metrics.error("x.com", "storage")
        metrics.scheduled("x.com", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        metrics.timeline([BAN])
        return scrape(listener.port)
    finally:
        listener.close()


def test_names_and_labels_are_the_documented_ones() -> None:
    """Every series the daemon exports, with its label set; nothing else, no NaN."""
    samples = filled()
    ours = {k for k in samples if not k[0].startswith(("process_", "python_"))}
    assert {name for name, _ in ours} == set(EXPORTED)
    for name, labels in ours:
        assert {label for label, _ in labels} == EXPORTED[name], name
    assert not any(math.isnan(value) for value in samples.values())


BAN = TimelineEvent(
    date=dt.date(2024, 2, 17),
    time=dt.time(20, 0),
    country="PK",
    platform="x",
    kind="block",
    title="X suspended nationwide",
    source="test",
    certainty="high",
)


def test_timeline_events_carry_their_moment_as_value() -> None:
    metrics = Metrics()
    metrics.timeline([BAN])
    labels = {
        "country": "PK",
        "platform": "x",
        "kind": "block",
        "title": "X suspended nationwide",
        "certainty": "high",
    }
    value = metrics.registry.get_sample_value("reachprobe_timeline_event_timestamp_seconds", labels)
    assert value == dt.datetime(2024, 2, 17, 20, 0, tzinfo=dt.UTC).timestamp()


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


@pytest.mark.parametrize(("host", "warned"), [("", True), ("0.0.0.0", True), ("127.0.0.1", False)])
def test_listening_on_every_interface_is_said(
    host: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="schedules.metricserver"):
        listener = Metrics(Vantage("pi-1")).serve(host, 0)
        listener.close()
    said = [r.getMessage() for r in caplog.records if "every interface" in r.getMessage()]
    assert bool(said) is warned, said
