"""Prometheus metrics of the daemon, named in the style of blackbox_exporter.

``probe_success`` and ``probe_duration_seconds{phase}`` mean what they mean
for blackbox_exporter (1 = the target worked; seconds per phase), so the
dashboards and alert rules people already have keep working; everything
specific to reachprobe (verdicts, blocking methods, interrupted checks) is
``reachprobe_*``.  Every series is labelled by ``target`` (the domain).

The metrics live in their own registry rather than prometheus_client's global
one, so tests and several daemons in one process do not share state.  The
listener (:mod:`schedules.metricserver`) is one thread of its own: it keeps
answering while a check hogs the event loop, and no client can make it hold
more than a bounded number of connections.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

from probe import __version__
from probe.verdict import Status, Verdict
from schedules.metricserver import MetricsServer

if TYPE_CHECKING:
    from probe.observations import DomainObservations
    from storage.records import Vantage

PHASES = ("resolve", "connect", "tls", "http", "total")


@dataclass
class Listener:
    """A running metrics HTTP listener."""

    server: MetricsServer
    host: str
    port: int

    def close(self) -> None:
        self.server.close()


class Metrics:
    """Updates the series from each finished (or interrupted) check."""

    def __init__(self, vantage: Vantage | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes etc., for the Pi budget
        self.success = Gauge(
            "probe_success",
            "1 if the last check found the target accessible, else 0",
            ["target"],
            registry=r,
        )
        self.duration = Gauge(
            "probe_duration_seconds",
            "Last check's duration by phase (median of successful attempts; total: whole check)",
            ["target", "phase"],
            registry=r,
        )
        self.status = Gauge(
            "reachprobe_status",
            "1 for the status of the last verdict, 0 for the others",
            ["target", "status"],
            registry=r,
        )
        self.blocking = Gauge(
            "reachprobe_blocking",
            "1 for each blocking method of the last verdict, else 0",
            ["target", "method"],
            registry=r,
        )
        self.verdicts = Counter(
            "reachprobe_verdict", "Verdicts by target and status", ["target", "status"], registry=r
        )
        self.check_seconds = Histogram(
            "reachprobe_check_duration_seconds",
            "Duration of whole checks",
            buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120),
            registry=r,
        )
        self.last_check = Gauge(
            "reachprobe_last_check_timestamp_seconds",
            "When the last completed check started",
            ["target"],
            registry=r,
        )
        self.last_success = Gauge(
            "reachprobe_last_success_timestamp_seconds",
            "When the last check that found the target accessible started",
            ["target"],
            registry=r,
        )
        self.next_run = Gauge(
            "reachprobe_next_run_timestamp_seconds",
            "When the next check is due",
            ["target"],
            registry=r,
        )
        self.interrupted_checks = Counter(
            "reachprobe_checks_interrupted",
            "Checks cut short by a shutdown (nothing stored)",
            ["target"],
            registry=r,
        )
        self.errors = Counter(
            "reachprobe_check_errors",
            "Checks that could not be completed or stored",
            ["target", "kind"],
            registry=r,
        )
        info = Gauge(
            "reachprobe_info",
            "Version and vantage of this probe",
            ["version", "vantage", "country", "network"],
            registry=r,
        )
        info.labels(
            __version__,
            vantage.name if vantage else "",
            (vantage.country or "") if vantage else "",
            (vantage.network or "") if vantage else "",
        ).set(1)
        self._methods: dict[str, set[str]] = {}
        self.vantage = vantage

    def observe(self, obs: DomainObservations, verdict: Verdict) -> None:
        """Record a completed check."""
        from storage.records import Vantage
        from storage.summary import measurement_row

        target = obs.domain
        accessible = verdict.status == Status.ACCESSIBLE
        self.success.labels(target).set(1 if accessible else 0)
        for status in Status:
            self.status.labels(target, status.value).set(1 if status == verdict.status else 0)
        current = {str(m) for m in verdict.blocking}
        seen = self._methods.setdefault(target, set())
        for method in seen | current:
            self.blocking.labels(target, method).set(1 if method in current else 0)
        seen |= current
        self.verdicts.labels(target, verdict.status.value).inc()

        # The same phase timings as the stored summary columns (storage.summary).
        summary = measurement_row("", self.vantage or Vantage(name=""), obs, verdict)
        resolve = [q.elapsed_ms for q in obs.dns if q.origin == "vantage" and q.ok]
        phases = {
            "resolve": statistics.median(resolve) if resolve else None,
            "connect": summary.tcp_ms,
            "tls": summary.tls_ms,
            "http": summary.http_ms,
            "total": obs.duration_ms,
        }
        for phase, ms in phases.items():
            # A phase that never succeeded has no duration: NaN, not a stale value.
            self.duration.labels(target, phase).set(ms / 1000 if ms is not None else float("nan"))
        self.check_seconds.observe(obs.duration_ms / 1000)
        started = obs.started_at.timestamp()
        self.last_check.labels(target).set(started)
        if accessible:
            self.last_success.labels(target).set(started)

    def interrupted(self, target: str) -> None:
        self.interrupted_checks.labels(target).inc()

    def error(self, target: str, kind: str) -> None:
        """``kind``: ``storage`` (could not save), ``usage`` (bad options) or ``internal``."""
        self.errors.labels(target, kind).inc()

    def scheduled(self, target: str, when: dt.datetime | None) -> None:
        self.next_run.labels(target).set(when.timestamp() if when else float("nan"))

    def serve(self, host: str, port: int) -> Listener:
        """Start the HTTP listener (``/metrics``; port 0 picks a free port)."""
        server = MetricsServer(self.registry, host, port)
        return Listener(server, host, server.port)
