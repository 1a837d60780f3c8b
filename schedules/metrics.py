"""Prometheus metrics of the daemon, named in the style of blackbox_exporter.

The names blackbox_exporter owns keep its meaning, so the dashboards and alert
rules people already have keep working: ``probe_success`` (1 = the target
worked), ``probe_duration_seconds`` (the whole check, no phase label) and
``probe_dns_lookup_time_seconds``.  Our per-phase timings are medians over
every address of a target, not one connection's phases, so they get their own
name (``reachprobe_phase_duration_seconds{phase}``) rather than borrowing
``probe_http_duration_seconds``, whose phases mean something else.  A phase
that did not succeed has no series at all (never NaN: NaN breaks averages and
alert comparisons).  ``reachprobe_failure{phase,failure}`` names why the last
check failed, in the closed failure vocabulary (probe.failures), which
blackbox_exporter cannot say.  Every series is labelled by ``target``.

Reported timeline events (bans, court orders) are exported as
``reachprobe_timeline_event_timestamp_seconds``, one series per event with
its moment as the value, so Grafana can draw them as annotations
(deploy/grafana/reachprobe.json).

The metrics live in their own registry rather than prometheus_client's global
one, so tests and several daemons in one process do not share state.  The
listener (:mod:`schedules.metricserver`) is one thread of its own: it keeps
answering while a check hogs the event loop, and no client can make it hold
more than a bounded number of connections.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable
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
    from storage.records import TimelineEvent, Vantage

PHASES = ("resolve", "connect", "tls", "http")  # reachprobe_phase_duration_seconds


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
            "How long the last check took, all phases and addresses together",
            ["target"],
            registry=r,
        )
        self.dns_lookup = Gauge(
            "probe_dns_lookup_time_seconds",
            "Last check's DNS lookup through the vantage resolver (median of answered queries)",
            ["target"],
            registry=r,
        )
        self.phase_duration = Gauge(
            "reachprobe_phase_duration_seconds",
            "Last check's duration by phase: median of the successful attempts over all addresses",
            ["target", "phase"],
            registry=r,
        )
        self.failure = Gauge(
            "reachprobe_failure",
            "1 for the phase and failure that ended the last check, 0 for earlier ones",
            ["target", "phase", "failure"],
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
        self.timeline_event = Gauge(
            "reachprobe_timeline_event_timestamp_seconds",
            "When a reported event (ban, restore, court order...) took effect",
            ["country", "platform", "kind", "title", "certainty"],
            registry=r,
        )
        self._methods: dict[str, set[tuple[str, ...]]] = {}
        self._failures: dict[str, set[tuple[str, ...]]] = {}
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
        _one_hot(self.blocking, target, {(str(m),) for m in verdict.blocking}, self._methods)
        self.verdicts.labels(target, verdict.status.value).inc()

        # The same phase timings as the stored summary columns (storage.summary).
        summary = measurement_row("", self.vantage or Vantage(name=""), obs, verdict)
        resolve = [q.elapsed_ms for q in obs.dns if q.origin == "vantage" and q.ok]
        phases = {
            "resolve": statistics.median(resolve) if resolve else None,
            "connect": summary.tcp_ms,
            "tls": summary.tls_ms,
            "http": summary.http_ms,
        }
        for phase, ms in phases.items():
            _set_or_remove(self.phase_duration, (target, phase), ms)
        _set_or_remove(self.dns_lookup, (target,), phases["resolve"])
        self.duration.labels(target).set(obs.duration_ms / 1000)
        failed: set[tuple[str, ...]] = set()
        if summary.first_failure:  # "phase:failure"
            failed.add(tuple(summary.first_failure.split(":", 1)))
        _one_hot(self.failure, target, failed, self._failures)
        self.check_seconds.observe(obs.duration_ms / 1000)
        started = obs.started_at.timestamp()
        self.last_check.labels(target).set(started)
        if accessible:
            self.last_success.labels(target).set(started)

    def timeline(self, events: Iterable[TimelineEvent]) -> None:
        """Export reported events (one series each) for Grafana's annotations."""
        from storage.timeline import event_moment

        for e in events:
            labels = (e.country, e.platform, e.kind, e.title, e.certainty)
            self.timeline_event.labels(*labels).set(event_moment(e).timestamp())

    def interrupted(self, target: str) -> None:
        self.interrupted_checks.labels(target).inc()

    def error(self, target: str, kind: str) -> None:
        """``kind``: ``storage`` (could not save), ``usage`` (bad options) or ``internal``."""
        self.errors.labels(target, kind).inc()

    def scheduled(self, target: str, when: dt.datetime | None) -> None:
        _set_or_remove(self.next_run, (target,), when.timestamp() * 1000 if when else None)

    def serve(self, host: str, port: int) -> Listener:
        """Start the HTTP listener (``/metrics``; port 0 picks a free port)."""
        server = MetricsServer(self.registry, host, port)
        return Listener(server, host, server.port)


def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], milliseconds: float | None) -> None:
    """Set a gauge in seconds, or drop its series when there is no value (no NaN)."""
    if milliseconds is None:
        gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(milliseconds / 1000)


def _one_hot(
    gauge: Gauge,
    target: str,
    current: set[tuple[str, ...]],
    seen: dict[str, set[tuple[str, ...]]],
) -> None:
    """1 for each current label set, 0 for those this target had before (so alerts resolve)."""
    known = seen.setdefault(target, set())
    for labels in known | current:
        gauge.labels(target, *labels).set(1 if labels in current else 0)
    known |= current
