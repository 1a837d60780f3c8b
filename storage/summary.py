"""The summary columns stored beside each measurement's full observations.

They answer the common questions (what did DNS say, where did the
connection die, what page came back) with plain columns, so listings,
filters and CSV exports never decode the observation JSON.  Definitions are
documented in docs/data-format.md; change them together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from probe.failures import Failure
from probe.observations import (
    DomainObservations,
    EndpointObservation,
    HTTPObservation,
    TCPObservation,
    TLSObservation,
)
from probe.verdict import Verdict
from storage.records import MeasurementRow, Vantage

LIST_SEPARATOR = ";"


def measurement_row(
    measurement_id: str,
    vantage: Vantage,
    obs: DomainObservations,
    verdict: Verdict,
    started_at: dt.datetime | None = None,
) -> MeasurementRow:
    """The row stored (and exported) for one measurement.

    ``started_at`` replaces ``obs.started_at`` for a reader that keeps it as
    text (storage.wire's mirrors). Each list is walked once, without the
    dataclasses' properties: a collector does this for every upload.
    """
    endpoints = obs.endpoints
    attempts = _Attempts.of(endpoints)
    answers: dict[str, dict[str, None]] = {"vantage": {}, "control": {}}
    for q in obs.dns:
        if q.replies and q.origin in answers:
            found = answers[q.origin]
            for r in q.replies[0].records:
                if r.rtype in _ADDRESS_TYPES:
                    found[r.value] = None
    shown = _shown_response(endpoints)
    return MeasurementRow(
        id=measurement_id,
        vantage=vantage,
        domain=obs.domain,
        input=obs.input,
        platform=obs.platform,
        started_at=(started_at or obs.started_at).astimezone(dt.UTC),
        duration_ms=obs.duration_ms,
        verdict=str(verdict.status),
        blocking=tuple(str(m) for m in verdict.blocking),
        trigger=str(verdict.trigger) if verdict.trigger else None,
        resolver=obs.settings.resolver,
        probe_version=obs.probe_version,
        classifier_version=verdict.classifier_version,
        blockpage=verdict.blockpage,
        dns_answers=tuple(answers["vantage"]),
        control_answers=tuple(answers["control"]),
        first_failure=_first_failure(obs, bool(answers["vantage"]), attempts),
        tls_failures=_distinct(attempts.tls),
        http_status=shown.status if shown else None,
        http_failures=_distinct(attempts.http),
        http_title=shown.title if shown else None,
        tcp_ms=_median(attempts.tcp),
        tls_ms=_median(attempts.tls),
        http_ms=_median(attempts.http),
        helper_saw_site=_saw_site(obs),
    )


_ADDRESS_TYPES = ("A", "AAAA")  # probe.observations.DNSReply.addresses
_Attempt = TCPObservation | TLSObservation | HTTPObservation


@dataclass(frozen=True, slots=True)
class _Attempts:
    """Every endpoint's TCP, TLS and HTTP attempt (with the target name), in order."""

    tcp: list[TCPObservation]
    tls: list[TLSObservation]
    http: list[HTTPObservation]
    skipped: list[Failure]

    @classmethod
    def of(cls, endpoints: Sequence[EndpointObservation]) -> _Attempts:
        found = cls([], [], [], [])
        for e in endpoints:
            if e.tcp is not None:
                found.tcp.append(e.tcp)
            if e.tls is not None:
                found.tls.append(e.tls)
            if e.http is not None:
                found.http.append(e.http)
            if e.skipped is not None:
                found.skipped.append(e.skipped)
        return found


def first_failure(obs: DomainObservations) -> str | None:
    """``phase:failure`` of the earliest phase (dns, tcp, tls, http) that failed every time.

    A phase counts as failed only when no attempt at it succeeded, so an
    empty AAAA answer or one dead IPv6 address does not mask a working path.
    The failure named is the earliest-started failed attempt of that phase.
    """
    answered = any(q.addresses for q in obs.dns if q.origin == "vantage")
    return _first_failure(obs, answered, _Attempts.of(obs.endpoints))


def _first_failure(obs: DomainObservations, answered: bool, attempts: _Attempts) -> str | None:
    """first_failure, given whether a vantage query had addresses, and the attempts."""
    if not answered:
        queries = [q for q in obs.dns if q.origin == "vantage"]
        if queries:
            failed = sorted((q for q in queries if q.failure), key=lambda q: q.t_ms)
            return f"dns:{failed[0].failure}" if failed else "dns:dns_no_answer"
    if not attempts.tcp:
        return f"tcp:{attempts.skipped[0]}" if attempts.skipped else None
    phases: tuple[tuple[str, Sequence[_Attempt]], ...] = (
        ("tcp", attempts.tcp),
        ("tls", attempts.tls),
        ("http", attempts.http),
    )
    for phase, tried in phases:
        if tried and all(a.failure is not None for a in tried):
            earliest = min(tried, key=lambda a: a.t_ms)
            return f"{phase}:{earliest.failure}"
    return None


def _distinct(attempts: list[TLSObservation] | list[HTTPObservation]) -> tuple[str, ...]:
    return tuple({str(a.failure): None for a in attempts if a.failure is not None})


def _median(attempts: Sequence[_Attempt]) -> float | None:
    """Median in ms of the successful attempts, rounded to 0.1 ms: finer digits are noise."""
    ordered = sorted([a.elapsed_ms for a in attempts if a.failure is None])
    if not ordered:
        return None
    middle = len(ordered) // 2  # statistics.median, without its generality
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(median, 1)


def _shown_response(endpoints: Sequence[EndpointObservation]) -> HTTPObservation | None:
    """The response a user would have seen: the first one with a status, HTTPS first."""
    shown = [e for e in endpoints if e.http is not None and e.http.status is not None]
    first = next((e for e in shown if e.port == 443), shown[0] if shown else None)
    return first.http if first is not None else None


def _saw_site(obs: DomainObservations) -> str | None:
    saw = obs.helper.saw_site if obs.helper is not None else None
    return None if saw is None else str(saw).lower()
