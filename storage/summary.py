"""The summary columns stored beside each measurement's full observations.

They answer the common questions (what did DNS say, where did the
connection die, what page came back) with plain columns, so listings,
filters and CSV exports never decode the observation JSON.  Definitions are
documented in docs/data-format.md; change them together.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Sequence

from probe.failures import Failure
from probe.observations import (
    DomainObservations,
    HTTPObservation,
    Origin,
    TCPObservation,
    TLSObservation,
)
from probe.verdict import Verdict
from storage.records import MeasurementRow, Vantage

LIST_SEPARATOR = ";"


def measurement_row(
    measurement_id: str, vantage: Vantage, obs: DomainObservations, verdict: Verdict
) -> MeasurementRow:
    """The row stored (and exported) for one measurement."""
    endpoints = obs.endpoints
    tls = [e.tls for e in endpoints if e.tls is not None]
    http = [e.http for e in endpoints if e.http is not None]
    shown = _shown_response(obs)
    return MeasurementRow(
        id=measurement_id,
        vantage=vantage,
        domain=obs.domain,
        input=obs.input,
        platform=obs.platform,
        started_at=obs.started_at.astimezone(dt.UTC),
        duration_ms=obs.duration_ms,
        verdict=str(verdict.status),
        blocking=tuple(str(m) for m in verdict.blocking),
        trigger=str(verdict.trigger) if verdict.trigger else None,
        resolver=obs.settings.resolver,
        probe_version=obs.probe_version,
        classifier_version=verdict.classifier_version,
        blockpage=verdict.blockpage,
        dns_answers=_answers(obs, "vantage"),
        control_answers=_answers(obs, "control"),
        first_failure=first_failure(obs),
        tls_failures=_distinct(t.failure for t in tls),
        http_status=shown.status if shown else None,
        http_failures=_distinct(h.failure for h in http),
        http_title=shown.title if shown else None,
        tcp_ms=_median(e.tcp.elapsed_ms for e in endpoints if e.tcp and e.tcp.ok),
        tls_ms=_median(t.elapsed_ms for t in tls if t.ok),
        http_ms=_median(h.elapsed_ms for h in http if h.ok),
        helper_saw_site=_saw_site(obs),
    )


def _saw_site(obs: DomainObservations) -> str | None:
    saw = obs.helper.saw_site if obs.helper is not None else None
    return None if saw is None else str(saw).lower()


def first_failure(obs: DomainObservations) -> str | None:
    """``phase:failure`` of the earliest phase (dns, tcp, tls, http) that failed every time.

    A phase counts as failed only when no attempt at it succeeded, so an
    empty AAAA answer or one dead IPv6 address does not mask a working path.
    The failure named is the earliest-started failed attempt of that phase.
    """
    queries = [q for q in obs.dns if q.origin == "vantage"]
    if queries and not any(q.addresses for q in queries):
        failed = sorted((q for q in queries if q.failure), key=lambda q: q.t_ms)
        return f"dns:{failed[0].failure}" if failed else "dns:dns_no_answer"
    endpoints = obs.endpoints
    dialled = [e.tcp for e in endpoints if e.tcp is not None]
    if not dialled:
        skipped = [e.skipped for e in endpoints if e.skipped is not None]
        return f"tcp:{skipped[0]}" if skipped else None
    phases: tuple[tuple[str, Sequence[TCPObservation | TLSObservation | HTTPObservation]], ...] = (
        ("tcp", dialled),
        ("tls", [e.tls for e in endpoints if e.tls is not None]),
        ("http", [e.http for e in endpoints if e.http is not None]),
    )
    for phase, attempts in phases:
        if attempts and not any(a.ok for a in attempts):
            earliest = min(attempts, key=lambda a: a.t_ms)
            return f"{phase}:{earliest.failure}"
    return None


def _answers(obs: DomainObservations, origin: Origin) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for q in obs.dns if q.origin == origin for a in q.addresses))


def _distinct(failures: Iterable[Failure | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(f) for f in failures if f is not None))


def _median(values: Iterable[float]) -> float | None:
    """Median in ms, rounded to 0.1 ms: finer digits are noise, not signal."""
    ordered = list(values)
    return round(statistics.median(ordered), 1) if ordered else None


def _shown_response(obs: DomainObservations) -> HTTPObservation | None:
    """The response a user would have seen: the first one with a status, HTTPS first."""
    ordered = sorted(
        (e for e in obs.endpoints if e.http is not None and e.http.status is not None),
        key=lambda e: e.port != 443,
    )
    return ordered[0].http if ordered else None
