"""The terminal form of a :class:`~storage.report.summary.Report` (plain text, aligned)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from storage.report.summary import Agreement, Report, Series
from storage.timeline import event_moment


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def fmt_time(when: dt.datetime | None) -> str:
    return "-" if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def _bound(when: dt.datetime | None, *, end: bool = False) -> str:
    if when is None:
        return "-"
    utc = when.astimezone(dt.UTC)
    if utc.time() == dt.time(0):
        return str((utc - dt.timedelta(days=1)).date() if end else utc.date())
    return f"before {fmt_time(utc)}" if end else fmt_time(utc)


def fmt_lag(lag: dt.timedelta | None) -> str:
    """``+1d 5h``: positive when the network changed after the reported date."""
    if lag is None:
        return "-"
    sign = "-" if lag < dt.timedelta(0) else "+"
    minutes = int(abs(lag).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = ([f"{days}d"] if days else []) + ([f"{hours}h"] if hours else [])
    if not parts:
        parts = [f"{mins}m"]
    return sign + " ".join(parts)


def fmt_methods(methods: Sequence[tuple[str, int]], limit: int = 3) -> str:
    return ", ".join(f"{m} {n}" for m, n in methods[:limit]) or "-"


def period(report: Report) -> str:
    """Both ends inclusive: a bound at midnight UTC is a day (the end's is the day before
    it, as a bare --until date includes that day); another end is 'before' its time."""
    if report.since or report.until:
        return f"{_bound(report.since)} .. {_bound(report.until, end=True)}"
    if report.days:
        return f"{report.days[0]} .. {report.days[-1]}"
    return "all time"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return lines


def series_rows(series: Sequence[Series]) -> list[list[str]]:
    return [
        [
            s.label,
            str(s.checks),
            percent(s.blocked_share),
            fmt_methods(s.methods),
            percent(s.agreement.rate),
        ]
        for s in series
    ]


SERIES_HEADER = ("series", "checks", "blocked", "methods (blocked checks)", "agrees w/ reports")
EDGE_HEADER = ("series", "edge", "detected (UTC)", "reported (UTC)", "lag")


def edge_rows(series: Sequence[Series]) -> list[list[str]]:
    return [
        [s.key, e.kind, fmt_time(e.detected), fmt_time(e.reported), fmt_lag(e.lag)]
        for s in series
        for e in s.edges
    ]


ENDPOINT_HEADER = ("vantage", "endpoint", "checks", "blocked", "methods", "blocked (UTC)")


def _episodes(s: Series) -> str:
    spans = [f"{fmt_time(e.onset)} .. {fmt_time(e.end) if e.end else 'now'}" for e in s.episodes]
    return "; ".join(spans) or "-"


def endpoint_rows(report: Report) -> list[list[str]]:
    """One row per vantage and endpoint: its own share and sustained blocking."""
    return [
        [
            v.key,
            e.key,
            str(e.checks),
            percent(e.blocked_share),
            fmt_methods(e.methods, 2),
            _episodes(e),
        ]
        for v in report.vantages
        for e in v.endpoints
    ]


def endpoint_edges(report: Report) -> list[Series]:
    """Every endpoint series, keyed ``vantage / domain`` for the edge table."""
    return [replace(e, key=f"{v.key} / {e.key}") for v in report.vantages for e in v.endpoints]


def platform_lines(report: Report) -> list[str]:
    """Per vantage, which endpoints were blocked when (sustained blocking only)."""
    lines = []
    for v in report.vantages:
        blocked = [e for e in v.endpoints if e.episodes]
        spans = [f"{e.key} blocked {_episodes(e)}" for e in blocked]
        rest = len(v.endpoints) - len(blocked)
        if rest:
            other = "the other " if blocked else ""
            spans.append(f"no sustained blocking on {other}{rest} endpoint(s)")
        lines.append(f"{v.key}: " + "; ".join(spans))
    return lines


def agreement_rows(a: Agreement) -> list[list[str]]:
    return [
        ["measured blocked", str(a.blocked_reported_blocked), str(a.blocked_reported_restored)],
        [
            "measured accessible",
            str(a.accessible_reported_blocked),
            str(a.accessible_reported_restored),
        ],
    ]


def daily_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Blocked share per day per vantage, with the reported status and the day's events."""
    header = ["day (UTC)", "reported", *[s.key for s in report.vantages], "events"]
    by_day = [{d.day: d for d in s.days} for s in report.vantages]
    rows = []
    for day, status in zip(report.days, report.reported_days, strict=True):
        cells = []
        for days in by_day:
            stat = days.get(day)
            cells.append("" if stat is None else f"{percent(stat.blocked_share)} ({stat.checks})")
        kinds = [e.kind for e in report.events if event_moment(e).date() == day]
        rows.append([day.isoformat(), str(status), *cells, ", ".join(kinds)])
    return header, rows


def render_text(report: Report) -> str:
    what = " ".join(
        b
        for b in (
            f"platform {report.platform}" if report.platform else "all platforms",
            f"in {report.country}" if report.country else "",
        )
        if b
    )
    if report.domain:
        what = f"{report.domain} ({what})"
    lines = [f"Reachability report: {what}, {period(report)}"]
    if report.empty:
        lines.append("No measurements match.")
        lines += _events(report)
        return "\n".join(lines) + "\n"
    lines.append(
        f"{report.total_checks} check(s) from {len(report.vantages)} vantage(s); shares are "
        "of conclusive checks (blocked or accessible)."
    )
    lines += ["", "Per vantage", *_table(SERIES_HEADER, series_rows(report.vantages))]
    lines += ["", "Per network", *_table(SERIES_HEADER, series_rows(report.networks))]
    lines += ["", "Per endpoint", *_table(ENDPOINT_HEADER, endpoint_rows(report))]
    lines += ["", "Which endpoints were blocked when", *platform_lines(report)]
    r = report.rule
    lines += [
        "",
        "Blocking onset and end, detected from measurements",
        f"(onset: a blocked check after which >= {r.onset_share:.0%} of the checks in the "
        f"next {_hours(r.window)} (at least {r.min_checks}) are blocked; end: the same "
        f"with >= {r.end_share:.0%} accessible; lag = detected - reported)",
    ]
    edges = edge_rows([*report.vantages, *report.networks, *endpoint_edges(report)])
    lines += _table(EDGE_HEADER, edges) if edges else ["no sustained blocking detected"]
    a = report.agreement
    lines += [
        "",
        f"Agreement with the reported status: {percent(a.rate)} "
        f"({a.agree} agree, {a.disagree} disagree, {a.not_comparable} not comparable)",
        *_table(("", "reported blocked", "reported restored"), agreement_rows(a)),
    ]
    header, rows = daily_rows(report)
    lines += ["", "Per day: blocked share (checks)", *_table(header, rows)]
    lines += _events(report)
    return "\n".join(lines) + "\n"


def _events(report: Report) -> list[str]:
    if not report.events:
        return []
    return [
        "",
        "Reported events",
        *(
            f"{e.date} {e.platform:<3} {e.kind:<10} {e.title} [{e.source}; {e.certainty}]"
            for e in report.events
        ),
    ]


def _hours(window: dt.timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g}h"
