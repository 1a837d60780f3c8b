from __future__ import annotations

import datetime as dt
from collections import Counter

from collectors.timeline import builtin_events
from storage.records import MeasurementRow
from storage.report.summary import Report, build_report, checks_from_rows
from storage.report.text import daily_rows, fmt_lag, render_text
from storage.timeline import ReportedIndex, event_moment
from tests.storage.report.history import TRUTHS, history

UTC = dt.UTC
REPORTED_BLOCK = dt.datetime(2024, 2, 17, 17, tzinfo=UTC)  # 22:00 PKT


def reported_blocked(at: dt.datetime) -> bool:
    """The built-in timeline over the generated period, written out independently."""
    return at >= REPORTED_BLOCK or at.date() == dt.date(2024, 1, 20)


def make_report() -> tuple[list[MeasurementRow], Report]:
    events = builtin_events()
    rows = history()
    checks = checks_from_rows(rows, ReportedIndex(events))
    return rows, build_report(checks, events, country="PK", platform="x")


def test_agreement_matches_an_independent_count() -> None:
    rows, report = make_report()
    cells: Counter[tuple[str, bool]] = Counter(
        (r.verdict, reported_blocked(r.started_at))
        for r in rows
        if r.verdict in ("blocked", "accessible")
    )
    a = report.agreement
    assert a.blocked_reported_blocked == cells[("blocked", True)]
    assert a.blocked_reported_restored == cells[("blocked", False)]
    assert a.accessible_reported_blocked == cells[("accessible", True)]
    assert a.accessible_reported_restored == cells[("accessible", False)]
    assert a.not_comparable == sum(1 for r in rows if r.verdict == "inconclusive")
    agree = cells[("blocked", True)] + cells[("accessible", False)]
    assert a.rate is not None and abs(a.rate - agree / sum(cells.values())) < 1e-12


def test_series_per_vantage_and_network() -> None:
    rows, report = make_report()
    assert [s.key for s in report.vantages] == ["pk-jazz", "pk-nayatel", "pk-ptcl-1", "pk-ptcl-2"]
    assert [s.key for s in report.networks] == ["AS17557 PTCL", "AS23674 Nayatel", "AS45669 Jazz"]
    ptcl = report.networks[0]
    assert ptcl.vantages == ("pk-ptcl-1", "pk-ptcl-2")
    assert ptcl.checks == sum(1 for r in rows if r.vantage.asn == 17557)
    assert ptcl.methods[0][0] == "tls.reset"
    jazz = report.vantages[0]
    assert jazz.methods[0][0] == "dns.nxdomain"
    day = next(d for d in jazz.days if d.day == dt.date(2024, 3, 1))
    expected = [r for r in rows if r.vantage.name == "pk-jazz" and r.started_at.date() == day.day]
    assert day.checks == len(expected) == 12
    assert day.blocked == sum(1 for r in expected if r.verdict == "blocked")
    assert sum(n for _, n in day.primary) == day.blocked


def test_onset_end_and_lag_against_reported_dates() -> None:
    _, report = make_report()
    edges = {(s.key, e.kind): e for s in report.vantages for e in s.edges}
    truth = {t.vantage.name: t for t in TRUTHS}
    onset = edges[("pk-ptcl-1", "onset")]
    assert onset.detected == truth["pk-ptcl-1"].onset
    assert onset.reported == REPORTED_BLOCK and onset.lag == dt.timedelta(hours=1)
    nayatel = edges[("pk-nayatel", "onset")]
    assert nayatel.reported == REPORTED_BLOCK
    assert nayatel.lag is not None and dt.timedelta(days=4) <= nayatel.lag <= dt.timedelta(
        days=4, hours=9
    )
    jazz_end = edges[("pk-jazz", "end")]
    assert abs(jazz_end.detected - truth["pk-jazz"].end) <= dt.timedelta(hours=2)  # type: ignore[operator]
    assert jazz_end.reported is None  # the reported restore (2025-05-07) is far away
    assert ("pk-ptcl-1", "end") not in edges
    net = {(s.key, e.kind): e for s in report.networks for e in s.edges}
    assert net[("AS17557 PTCL", "onset")].detected == truth["pk-ptcl-1"].onset


def test_text_report_mentions_everything() -> None:
    _, report = make_report()
    text = render_text(report)
    for needle in (
        "Per vantage",
        "Per network",
        "pk-nayatel",
        "AS45669 Jazz",
        "+1h",
        "Agreement",
        "2024-02-17",
        "X suspended",
    ):
        assert needle in text
    assert fmt_lag(dt.timedelta(days=-1, hours=-5)) == "-1d 5h"
    assert fmt_lag(None) == "-"


def test_per_day_reported_status_counts_events_before_the_period() -> None:
    """`probe report --since` (or data that starts after the last event): the
    per-day table said "unknown" on every day of November 2026 although X was
    reported restored in May 2025, while the agreement counted the same checks
    as "reported restored"; both now read every event."""
    events = builtin_events()
    since = dt.datetime(2024, 3, 1, tzinfo=UTC)  # weeks after the reported block
    rows = [r for r in history() if r.started_at >= since]
    checks = checks_from_rows(rows, ReportedIndex(events))
    report = build_report(checks, events, country="PK", platform="x", since=since)
    assert all(event_moment(e) >= since for e in report.events)  # the block is not listed
    header, table = daily_rows(report)
    assert header[:2] == ["day (UTC)", "reported"] and len(table) == len(report.days) > 60
    assert {row[1] for row in table} == {"blocked"}
    assert {c.reported for c in checks} == {"blocked"}  # as the agreement reads them
    # Without --country, the checks' one country is the country.
    unnamed = build_report(checks, events, platform="x", since=since)
    assert set(unnamed.reported_days) == {"blocked"}
    assert set(build_report(checks, events, since=since).reported_days) == {"-"}


def test_empty_report() -> None:
    report = build_report([], builtin_events(), country="PK", platform="x")
    assert report.empty
    assert "No measurements match" in render_text(report)
