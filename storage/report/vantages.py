"""Comparing vantages: which ISP blocks which endpoint, since when, and how steadily.

The Pakistan ban on X was "sporadic ... based on the internet service
provider": one probe cannot show that, a collector's database of many can.
From the report's :class:`~storage.report.summary.Check` records this builds
three views (pure functions, rendered by :func:`render_text` and
:func:`write_csv`):

- per vantage and endpoint (domain), the status day by day beside the
  reported timeline events;
- a table ISP (network) x endpoint: share of conclusive checks blocked, the
  methods, first and last blocked check;
- intermittency: status flips per vantage and day, where a flip is two
  consecutive conclusive checks of one endpoint from one vantage that
  disagree (blocked, then accessible, or back).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from storage.records import TimelineEvent
from storage.report.summary import ACCESSIBLE, BLOCKED, Check, Tally, by_day
from storage.report.text import fmt_time, percent
from storage.text import spreadsheet_safe
from storage.timeline import event_moment

MAX_STRIP = 100  # characters of a status strip; longer periods put several days in one


@dataclass(frozen=True)
class Day(Tally):
    """One vantage's checks of one endpoint on one UTC day."""

    day: dt.date
    vantage: str
    endpoint: str
    checks: int
    blocked: int
    accessible: int
    flips: int
    methods: tuple[tuple[str, int], ...]
    reported: str  # the reported status at the day's last check


@dataclass(frozen=True)
class Cell(Tally):
    """One ISP's checks of one endpoint over the whole period."""

    network: str
    endpoint: str
    vantages: tuple[str, ...]
    checks: int
    blocked: int
    accessible: int
    methods: tuple[tuple[str, int], ...]
    first_blocked: dt.datetime | None
    last_blocked: dt.datetime | None


@dataclass(frozen=True)
class VantageInfo:
    name: str
    label: str  # name (country, ASN, network)
    network: str
    country: str | None
    asn: int | None
    isp: str | None


@dataclass(frozen=True)
class Comparison:
    vantages: tuple[VantageInfo, ...]
    endpoints: tuple[str, ...]
    days: tuple[Day, ...]  # sorted by vantage, endpoint, day
    cells: tuple[Cell, ...]  # sorted by network, endpoint
    events: tuple[TimelineEvent, ...]

    @property
    def first_day(self) -> dt.date | None:
        return min((d.day for d in self.days), default=None)

    @property
    def last_day(self) -> dt.date | None:
        return max((d.day for d in self.days), default=None)


def compare(checks: Iterable[Check], events: Iterable[TimelineEvent] = ()) -> Comparison:
    """The three views over ``checks`` (any order); ``events`` are shown as given."""
    by_series: dict[tuple[str, str], list[Check]] = defaultdict(list)
    infos: dict[str, VantageInfo] = {}
    for c in checks:
        by_series[(c.vantage, c.domain)].append(c)
        if c.vantage not in infos:
            infos[c.vantage] = _info(c)
    days: list[Day] = []
    by_cell: dict[tuple[str, str], list[Check]] = defaultdict(list)
    for (vantage, endpoint), series in sorted(by_series.items()):
        series.sort(key=lambda c: c.at)
        days += _days(vantage, endpoint, series)
        by_cell[(infos[vantage].network, endpoint)] += series
    cells = tuple(_cell(network, ep, group) for (network, ep), group in sorted(by_cell.items()))
    return Comparison(
        vantages=tuple(infos[name] for name in sorted(infos)),
        endpoints=tuple(sorted({ep for _, ep in by_series})),
        days=tuple(days),
        cells=cells,
        events=tuple(sorted(events, key=event_moment)),
    )


def _info(c: Check) -> VantageInfo:
    bits = [b for b in (c.country, f"AS{c.asn}" if c.asn is not None else None, c.network) if b]
    label = f"{c.vantage} ({', '.join(bits)})" if bits else c.vantage
    return VantageInfo(c.vantage, label, c.network_key, c.country, c.asn, c.network)


def _flips(series: Sequence[Check]) -> list[tuple[dt.date, bool]]:
    """For each conclusive check, its day and whether it disagrees with the previous one."""
    out: list[tuple[dt.date, bool]] = []
    previous: str | None = None
    for c in series:
        if c.verdict not in (BLOCKED, ACCESSIBLE):
            continue
        out.append((c.at.astimezone(dt.UTC).date(), previous is not None and c.verdict != previous))
        previous = c.verdict
    return out


def _days(vantage: str, endpoint: str, series: Sequence[Check]) -> list[Day]:
    flips: Counter[dt.date] = Counter(day for day, flipped in _flips(series) if flipped)
    return [
        Day(
            day=g.day,
            vantage=vantage,
            endpoint=endpoint,
            checks=len(g.checks),
            blocked=g.verdicts[BLOCKED],
            accessible=g.verdicts[ACCESSIBLE],
            flips=flips[g.day],
            methods=tuple(g.methods.most_common()),
            reported=str(g.checks[-1].reported),
        )
        for g in by_day(series)
    ]


def _cell(network: str, endpoint: str, group: Sequence[Check]) -> Cell:
    verdicts = Counter(c.verdict for c in group)
    blocked_at = [c.at for c in group if c.verdict == BLOCKED]
    return Cell(
        network=network,
        endpoint=endpoint,
        vantages=tuple(sorted({c.vantage for c in group})),
        checks=len(group),
        blocked=verdicts[BLOCKED],
        accessible=verdicts[ACCESSIBLE],
        methods=tuple(
            Counter(m for c in group if c.verdict == BLOCKED for m in c.methods).most_common()
        ),
        first_blocked=min(blocked_at, default=None),
        last_blocked=max(blocked_at, default=None),
    )


# ------------------------------------------------------------------ text


def _methods(methods: Sequence[tuple[str, int]], limit: int = 2) -> str:
    return ", ".join(f"{m} {n}" for m, n in methods[:limit]) or "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _symbol(blocked: int, accessible: int) -> str:
    if blocked and accessible:
        return "~"
    if blocked:
        return "B"
    if accessible:
        return "A"
    return "."


def strips(comparison: Comparison) -> tuple[int, list[tuple[str, str, str]]]:
    """(days per character, [(endpoint, vantage label, strip)]), events last per endpoint."""
    first, last = comparison.first_day, comparison.last_day
    if first is None or last is None:
        return 1, []
    span = (last - first).days + 1
    per = -(-span // MAX_STRIP)
    width = -(-span // per)
    cells: dict[tuple[str, str], list[tuple[int, int, bool]]] = defaultdict(
        lambda: [(0, 0, False)] * width
    )
    for d in comparison.days:
        i = (d.day - first).days // per
        row = cells[(d.endpoint, d.vantage)]
        blocked, accessible, _ = row[i]
        row[i] = (blocked + d.blocked, accessible + d.accessible, True)
    marks = [" "] * width
    for e in comparison.events:
        i = (e.date - first).days // per
        if 0 <= i < width:
            marks[i] = "^"
    labels = {v.name: v.label for v in comparison.vantages}
    out = []
    for endpoint in comparison.endpoints:
        for vantage in (v.name for v in comparison.vantages):
            found = cells.get((endpoint, vantage))
            if found is None:
                continue
            strip = "".join(_symbol(b, a) if seen else " " for b, a, seen in found)
            out.append((endpoint, labels[vantage], strip))
        out.append((endpoint, "reported events", "".join(marks)))
    return per, out


ISP_HEADER = ("ISP", "endpoint", "checks", "blocked", "methods", "first blocked", "last blocked")
FLIP_HEADER = ("vantage", "days", "days with flips", "flips", "most in a day")


def strip_lines(comparison: Comparison) -> list[str]:
    """The status-over-time view: a legend line, then each endpoint's strips."""
    per, rows = strips(comparison)
    unit = "day" if per == 1 else f"{per} days"
    lines = [
        f"Status over time, one character per {unit} from {comparison.first_day} to "
        f"{comparison.last_day} (B blocked, A accessible, ~ both, . nothing conclusive, "
        "^ a reported event)"
    ]
    width = max(len(label) for _, label, _ in rows)
    current = None
    for endpoint, label, strip in rows:
        if endpoint != current:
            lines.append(f"{endpoint}:")
            current = endpoint
        lines.append(f"  {label.ljust(width)}  |{strip}|")
    return lines


def isp_rows(comparison: Comparison) -> list[list[str]]:
    return [
        [
            c.network,
            c.endpoint,
            str(c.checks),
            percent(c.blocked_share),
            _methods(c.methods),
            fmt_time(c.first_blocked),
            fmt_time(c.last_blocked),
        ]
        for c in comparison.cells
    ]


def render_text(comparison: Comparison) -> str:
    if not comparison.days:
        return ""
    lines = ["Comparing vantages", "", *strip_lines(comparison)]
    lines += ["", "ISP x endpoint (blocked: share of conclusive checks)"]
    lines += _table(ISP_HEADER, isp_rows(comparison))
    lines += ["", "Intermittency: status flips per vantage and day (all endpoints)"]
    lines += _table(FLIP_HEADER, flip_rows(comparison))
    return "\n".join(lines) + "\n"


def flips_per_day(comparison: Comparison) -> dict[str, dict[dt.date, int]]:
    out: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    for d in comparison.days:
        out[d.vantage][d.day] += d.flips
    return out


def flip_rows(comparison: Comparison) -> list[list[str]]:
    per_day = flips_per_day(comparison)
    rows = []
    for v in comparison.vantages:
        days = per_day.get(v.name, {})
        worst = max(days.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        rows.append(
            [
                v.label,
                str(len(days)),
                str(sum(1 for n in days.values() if n)),
                str(sum(days.values())),
                f"{worst[1]} ({worst[0]})" if worst and worst[1] else "0",
            ]
        )
    return rows


# ------------------------------------------------------------------ CSV

CSV_COLUMNS = (
    "day",
    "vantage",
    "country",
    "asn",
    "network",
    "isp",
    "endpoint",
    "checks",
    "blocked",
    "accessible",
    "blocked_share",
    "flips",
    "methods",
    "reported_status",
    "events",
)


def write_csv(comparison: Comparison, out: TextIO) -> int:
    """One row per vantage, endpoint and day (tidy: plot or pivot it as you like)."""
    infos = {v.name: v for v in comparison.vantages}
    events: dict[dt.date, list[str]] = defaultdict(list)
    for e in comparison.events:
        events[e.date].append(f"{e.kind}: {e.title}")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in comparison.days:
        v = infos[d.vantage]
        share = d.blocked_share
        row = [
            d.day.isoformat(),
            d.vantage,
            v.country or "",
            "" if v.asn is None else str(v.asn),
            v.isp or "",
            v.network,
            d.endpoint,
            d.checks,
            d.blocked,
            d.accessible,
            "" if share is None else f"{share:.4f}",
            d.flips,
            ";".join(m for m, _ in d.methods),
            d.reported,
            " | ".join(events.get(d.day, ())),
        ]
        writer.writerow([spreadsheet_safe(c) if isinstance(c, str) else c for c in row])
    return len(comparison.days)
