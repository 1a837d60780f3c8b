"""Measurements read against the timeline: per-vantage, per-network and per-day figures.

Everything here is pure: it takes plain :class:`Check` records (built from
stored rows by :func:`checks_from_rows`) and timeline events, and returns a
:class:`Report` that the text, PNG and HTML renderers only format.  Days are
UTC days.  "Conclusive" checks are those whose verdict is ``blocked`` or
``accessible``; shares are over conclusive checks only, because ``down``,
``offline`` and ``inconclusive`` say nothing about censorship.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from storage.records import MeasurementRow, TimelineEvent
from storage.report.onset import Episode, OnsetRule, detect_episodes, nearest
from storage.timeline import ReportedIndex, ReportedStatus, event_moment

BLOCKED = "blocked"
ACCESSIBLE = "accessible"
UNSPECIFIED = "unspecified"
# A detected edge is matched with a reported one only when they are this close.
MATCH_WINDOW = dt.timedelta(days=60)


@dataclass(frozen=True)
class Check:
    """One measurement, reduced to what the report needs."""

    vantage: str
    at: dt.datetime  # timezone-aware UTC
    verdict: str
    methods: tuple[str, ...] = ()
    domain: str = ""
    platform: str | None = None
    country: str | None = None
    asn: int | None = None
    network: str | None = None
    reported: ReportedStatus = ReportedStatus.UNKNOWN

    @property
    def network_key(self) -> str:
        if self.asn is not None:
            return f"AS{self.asn}" + (f" {self.network}" if self.network else "")
        return self.network or f"(vantage {self.vantage})"


def checks_from_rows(rows: Iterable[MeasurementRow], index: ReportedIndex | None) -> list[Check]:
    """Reduce stored rows to checks, each with its reported status joined in."""
    out = []
    for row in rows:
        reported = index.for_row(row).status if index else ReportedStatus.UNKNOWN
        out.append(
            Check(
                vantage=row.vantage.name,
                at=row.started_at,
                verdict=row.verdict,
                methods=tuple(row.blocking),
                domain=row.domain,
                platform=row.platform,
                country=row.vantage.country,
                asn=row.vantage.asn,
                network=row.vantage.network,
                reported=reported,
            )
        )
    return out


class Tally:
    """Blocked and accessible counts of some checks; the other verdicts are inconclusive."""

    blocked: int
    accessible: int

    @property
    def conclusive(self) -> int:
        return self.blocked + self.accessible

    @property
    def blocked_share(self) -> float | None:
        return self.blocked / self.conclusive if self.conclusive else None


@dataclass(frozen=True)
class DayGroup:
    """The checks of one UTC day, with what both per-day views count of them."""

    day: dt.date
    checks: Sequence[Check]
    verdicts: Counter[str]
    methods: Counter[str]  # blocking methods of the day's blocked checks


def by_day(checks: Iterable[Check]) -> list[DayGroup]:
    """Checks grouped by their UTC day, oldest day first (order kept within a day)."""
    grouped: dict[dt.date, list[Check]] = defaultdict(list)
    for c in checks:
        grouped[c.at.astimezone(dt.UTC).date()].append(c)
    return [
        DayGroup(
            day=day,
            checks=group,
            verdicts=Counter(c.verdict for c in group),
            methods=Counter(m for c in group if c.verdict == BLOCKED for m in c.methods),
        )
        for day, group in sorted(grouped.items())
    ]


@dataclass(frozen=True)
class DayStat(Tally):
    day: dt.date
    checks: int
    blocked: int
    accessible: int
    methods: tuple[tuple[str, int], ...]  # blocking methods seen that day, most common first
    # blocked checks by their first (main) method, "unspecified" when none: these add up
    # to ``blocked``, so the plot can split the blocked share by method
    primary: tuple[tuple[str, int], ...] = ()

    @property
    def reachability(self) -> float | None:
        return self.accessible / self.conclusive if self.conclusive else None


@dataclass(frozen=True)
class Agreement:
    """Measured verdicts against reported statuses (conclusive, known ones only)."""

    blocked_reported_blocked: int = 0
    blocked_reported_restored: int = 0
    accessible_reported_blocked: int = 0
    accessible_reported_restored: int = 0
    not_comparable: int = 0  # verdict not conclusive, or nothing reported yet

    @property
    def agree(self) -> int:
        return self.blocked_reported_blocked + self.accessible_reported_restored

    @property
    def disagree(self) -> int:
        return self.blocked_reported_restored + self.accessible_reported_blocked

    @property
    def rate(self) -> float | None:
        compared = self.agree + self.disagree
        return self.agree / compared if compared else None


def agreement(checks: Iterable[Check]) -> Agreement:
    cells: Counter[tuple[str, ReportedStatus]] = Counter()
    other = 0
    for c in checks:
        if c.verdict in (BLOCKED, ACCESSIBLE) and c.reported != ReportedStatus.UNKNOWN:
            cells[(c.verdict, c.reported)] += 1
        else:
            other += 1
    return Agreement(
        blocked_reported_blocked=cells[(BLOCKED, ReportedStatus.BLOCKED)],
        blocked_reported_restored=cells[(BLOCKED, ReportedStatus.RESTORED)],
        accessible_reported_blocked=cells[(ACCESSIBLE, ReportedStatus.BLOCKED)],
        accessible_reported_restored=cells[(ACCESSIBLE, ReportedStatus.RESTORED)],
        not_comparable=other,
    )


@dataclass(frozen=True)
class Edge:
    """A detected onset or end, and the reported change it is matched with."""

    kind: str  # "onset" or "end"
    detected: dt.datetime
    reported: dt.datetime | None  # nearest reported change of the same kind, if close

    @property
    def lag(self) -> dt.timedelta | None:
        """Positive: the network changed after the reported date."""
        return None if self.reported is None else self.detected - self.reported


@dataclass(frozen=True)
class Series:
    """All checks of one vantage, or of one network (ASN) across vantages."""

    key: str
    label: str
    checks: int
    blocked: int
    accessible: int
    methods: tuple[tuple[str, int], ...]
    first: dt.datetime
    last: dt.datetime
    days: tuple[DayStat, ...]
    episodes: tuple[Episode, ...]
    edges: tuple[Edge, ...]
    agreement: Agreement
    vantages: tuple[str, ...] = ()
    # one series per endpoint (domain) of a vantage's series: a block of one
    # endpoint among seven is lost in the vantage's pooled share, not here
    endpoints: tuple[Series, ...] = ()

    @property
    def blocked_share(self) -> float | None:
        conclusive = self.blocked + self.accessible
        return self.blocked / conclusive if conclusive else None


@dataclass(frozen=True)
class Report:
    country: str | None
    platform: str | None
    since: dt.datetime | None
    until: dt.datetime | None
    rule: OnsetRule
    vantages: tuple[Series, ...]
    networks: tuple[Series, ...]
    agreement: Agreement
    events: tuple[TimelineEvent, ...]  # the events drawn and listed, sorted
    total_checks: int
    days: tuple[dt.date, ...] = field(default=())  # every day with at least one check
    # The reported status at the end of each of ``days``, read from every event
    # (not only ``events``, those of the period): "-" without one platform and country.
    reported_days: tuple[str, ...] = field(default=())
    domain: str | None = None

    @property
    def empty(self) -> bool:
        return self.total_checks == 0


def build_report(
    checks: Sequence[Check],
    events: Iterable[TimelineEvent],
    *,
    country: str | None = None,
    platform: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    rule: OnsetRule | None = None,
    domain: str | None = None,
) -> Report:
    """Aggregate ``checks`` (already filtered) and read them against ``events``."""
    rule = rule or OnsetRule()
    all_events = tuple(events)
    index = ReportedIndex(all_events)
    by_vantage: dict[str, list[Check]] = defaultdict(list)
    by_network: dict[str, list[Check]] = defaultdict(list)
    for c in checks:
        by_vantage[c.vantage].append(c)
        by_network[c.network_key].append(c)
    vantages = tuple(
        _series(
            key,
            _vantage_label(group),
            group,
            index,
            platform,
            rule,
            endpoints=_per_endpoint(group, index, platform, rule),
        )
        for key, group in sorted(by_vantage.items())
    )
    networks = tuple(
        _series(key, key, group, index, platform, rule) for key, group in sorted(by_network.items())
    )
    countries = {c.country for c in checks if c.country} | ({country} if country else set())
    platforms = {c.platform for c in checks if c.platform} | ({platform} if platform else set())
    # A period without measurements still shows its reported events (of any
    # country or platform, unless one was asked for).
    shown = sorted(
        (
            e
            for e in all_events
            if (e.country in countries or not countries)
            and (e.platform in platforms or e.platform == "*" or not platforms)
            and _in_range(event_moment(e), since, until, checks)
        ),
        key=lambda e: (event_moment(e), e.title),
    )
    days = tuple(sorted({c.at.astimezone(dt.UTC).date() for c in checks}))
    where = country or (min(countries) if len(countries) == 1 else None)
    reported_days = tuple(
        index.at(where, platform, dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)).status
        if where and platform
        else "-"
        for day in days
    )
    return Report(
        country=country,
        platform=platform,
        since=since,
        until=until,
        rule=rule,
        vantages=vantages,
        networks=networks,
        agreement=agreement(checks),
        events=tuple(shown),
        total_checks=len(checks),
        days=days,
        reported_days=reported_days,
        domain=domain,
    )


def _in_range(
    moment: dt.datetime,
    since: dt.datetime | None,
    until: dt.datetime | None,
    checks: Sequence[Check],
) -> bool:
    """Events inside the report period; without bounds, the span of the data."""
    start = since or (min(c.at for c in checks) if checks else None)
    stop = until or (max(c.at for c in checks) if checks else None)
    if start is None or stop is None:
        return True
    day = dt.timedelta(days=1)
    return start - day <= moment <= stop + day


def _vantage_label(group: Sequence[Check]) -> str:
    c = group[0]
    bits = [b for b in (c.country, f"AS{c.asn}" if c.asn is not None else None, c.network) if b]
    return f"{c.vantage} ({', '.join(bits)})" if bits else c.vantage


def _per_endpoint(
    group: Sequence[Check], index: ReportedIndex, platform: str | None, rule: OnsetRule
) -> tuple[Series, ...]:
    by_domain: dict[str, list[Check]] = defaultdict(list)
    for c in group:
        by_domain[c.domain].append(c)
    return tuple(
        _series(d, d, checks, index, platform, rule) for d, checks in sorted(by_domain.items())
    )


def _series(
    key: str,
    label: str,
    group: Sequence[Check],
    index: ReportedIndex,
    platform: str | None,
    rule: OnsetRule,
    endpoints: tuple[Series, ...] = (),
) -> Series:
    ordered = sorted(group, key=lambda c: c.at)
    verdicts = Counter(c.verdict for c in ordered)
    methods: Counter[str] = Counter(m for c in ordered if c.verdict == BLOCKED for m in c.methods)
    conclusive = [
        (c.at, c.verdict == BLOCKED) for c in ordered if c.verdict in (BLOCKED, ACCESSIBLE)
    ]
    episodes = detect_episodes(conclusive, rule)
    return Series(
        key=key,
        label=label,
        checks=len(ordered),
        blocked=verdicts[BLOCKED],
        accessible=verdicts[ACCESSIBLE],
        methods=tuple(methods.most_common()),
        first=ordered[0].at,
        last=ordered[-1].at,
        days=_days(ordered),
        episodes=episodes,
        edges=_edges(episodes, ordered, index, platform),
        agreement=agreement(ordered),
        vantages=tuple(sorted({c.vantage for c in ordered})),
        endpoints=endpoints,
    )


def _days(ordered: Sequence[Check]) -> tuple[DayStat, ...]:
    return tuple(
        DayStat(
            day=g.day,
            checks=len(g.checks),
            blocked=g.verdicts[BLOCKED],
            accessible=g.verdicts[ACCESSIBLE],
            methods=tuple(g.methods.most_common()),
            primary=tuple(
                Counter(
                    c.methods[0] if c.methods else UNSPECIFIED
                    for c in g.checks
                    if c.verdict == BLOCKED
                ).most_common()
            ),
        )
        for g in by_day(ordered)
    )


def _edges(
    episodes: Sequence[Episode],
    ordered: Sequence[Check],
    index: ReportedIndex,
    platform: str | None,
) -> tuple[Edge, ...]:
    countries = {c.country for c in ordered if c.country}
    platforms = {platform} if platform else {c.platform for c in ordered if c.platform}
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    if len(countries) == 1 and len(platforms) == 1:
        timeline = index.timeline(next(iter(countries)), next(iter(platforms)))
        for moment, status in timeline.transitions():
            (starts if status == ReportedStatus.BLOCKED else ends).append(moment)
    edges = []
    for ep in episodes:
        edges.append(Edge("onset", ep.onset, _match(ep.onset, starts)))
        if ep.end is not None:
            edges.append(Edge("end", ep.end, _match(ep.end, ends)))
    return tuple(edges)


def _match(moment: dt.datetime, candidates: Sequence[dt.datetime]) -> dt.datetime | None:
    best = nearest(moment, candidates)
    if best is None or abs(best - moment) > MATCH_WINDOW:
        return None
    return best
