"""What was *reported* about a platform at a given moment: the timeline join.

Measurements say what a vantage saw; the timeline says what the press,
courts and governments said.  Reading one against the other needs a precise
rule for the reported status at an instant (docs/timeline-and-reports.md):

* Only events of the measurement's vantage country count.  Events of the
  measurement's own platform change the status; events recorded for every
  platform (``platform = "*"``, e.g. a regional mobile-data shutdown) are
  context only: they can be the last event but never change the status,
  because such reports rarely say when they ended or whom they covered.
* ``block``, ``partial`` and ``shutdown`` make the status ``blocked`` until a
  ``restore`` makes it ``restored``.
* ``disruption`` is transient: ``blocked`` from its moment to the end of that
  (UTC) day, then back to whatever the other events say.
* ``court``, ``statement`` and ``other`` never change the status.
* Before the first status-changing event the status is ``unknown``.
* An event's moment is its date and time in UTC; an event without a time
  takes effect at 00:00 UTC of its date.  At equal moments a restore is
  applied after a block, so it wins.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.records import MeasurementRow, TimelineEvent

if TYPE_CHECKING:
    from storage.export import CsvColumnGroup
    from storage.store import Store

ALL_PLATFORMS = "*"
_bisect_right = bisect.bisect_right
BLOCKING_KINDS = frozenset({"block", "partial", "shutdown"})
TRANSIENT_KINDS = frozenset({"disruption"})
RESTORE_KINDS = frozenset({"restore"})
# Columns the CSV export gains (see :func:`reported_columns`).
REPORTED_COLUMNS = ("reported_status", "last_event_date", "last_event")


class ReportedStatus(enum.StrEnum):
    BLOCKED = "blocked"
    RESTORED = "restored"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reported:
    status: ReportedStatus
    last_event: TimelineEvent | None = None


def event_moment(event: TimelineEvent) -> dt.datetime:
    """The UTC instant an event takes effect."""
    when = event.time or dt.time(0, 0)
    if when.tzinfo is not None:  # defensive: parsers store naive UTC times
        moment = dt.datetime.combine(event.date, when)
        return moment.astimezone(dt.UTC)
    return dt.datetime.combine(event.date, when, tzinfo=dt.UTC)


def _order(event: TimelineEvent) -> tuple[dt.datetime, int, str]:
    rank = 0 if event.kind in BLOCKING_KINDS | TRANSIENT_KINDS else 1
    return (event_moment(event), rank, event.title)


def sort_events(events: Iterable[TimelineEvent]) -> list[TimelineEvent]:
    return sorted(events, key=_order)


class ReportedTimeline:
    """The reported status of one platform in one country, queryable by instant."""

    def __init__(self, events: Iterable[TimelineEvent], country: str, platform: str) -> None:
        relevant = sort_events(
            e for e in events if e.country == country and e.platform in (platform, ALL_PLATFORMS)
        )
        self.events: tuple[TimelineEvent, ...] = tuple(relevant)
        self._event_moments = [event_moment(e) for e in relevant]
        steps: list[tuple[dt.datetime, ReportedStatus]] = []
        windows: list[tuple[dt.datetime, dt.datetime]] = []
        for event, moment in zip(relevant, self._event_moments, strict=True):
            if event.platform != platform:
                continue
            if event.kind in BLOCKING_KINDS:
                steps.append((moment, ReportedStatus.BLOCKED))
            elif event.kind in RESTORE_KINDS:
                steps.append((moment, ReportedStatus.RESTORED))
            elif event.kind in TRANSIENT_KINDS:
                day_end = dt.datetime.combine(
                    moment.date() + dt.timedelta(days=1), dt.time(0, 0), tzinfo=dt.UTC
                )
                windows.append((moment, day_end))
        self._step_moments = [m for m, _ in steps]
        self._step_status = [s for _, s in steps]
        self._windows = tuple(windows)

    def status_at(self, when: dt.datetime) -> ReportedStatus:
        if any(start <= when < stop for start, stop in self._windows):
            return ReportedStatus.BLOCKED
        i = bisect.bisect_right(self._step_moments, when)
        return self._step_status[i - 1] if i else ReportedStatus.UNKNOWN

    def last_event_at(self, when: dt.datetime) -> TimelineEvent | None:
        i = bisect.bisect_right(self._event_moments, when)
        return self.events[i - 1] if i else None

    def at(self, when: dt.datetime) -> Reported:
        return Reported(self.status_at(when), self.last_event_at(when))

    def changes(self) -> tuple[dt.datetime, ...]:
        """Sorted instants where :meth:`at` may change; it is constant between them."""
        bounds = set(self._event_moments).union(*self._windows)
        return tuple(sorted(bounds))

    def transitions(self) -> tuple[tuple[dt.datetime, ReportedStatus], ...]:
        """Instants where the persistent status changes (disruptions excluded)."""
        out: list[tuple[dt.datetime, ReportedStatus]] = []
        previous = ReportedStatus.UNKNOWN
        for moment, status in zip(self._step_moments, self._step_status, strict=True):
            if status != previous:
                out.append((moment, status))
                previous = status
        return tuple(out)


class ReportedIndex:
    """Reported status for any (country, platform, instant), from one event list."""

    def __init__(self, events: Iterable[TimelineEvent]) -> None:
        self._events = tuple(events)
        self._cache: dict[tuple[str, str], ReportedTimeline] = {}

    def timeline(self, country: str, platform: str) -> ReportedTimeline:
        key = (country, platform)
        if key not in self._cache:
            self._cache[key] = ReportedTimeline(self._events, country, platform)
        return self._cache[key]

    def at(self, country: str | None, platform: str | None, when: dt.datetime) -> Reported:
        if not country or not platform:
            return Reported(ReportedStatus.UNKNOWN)
        return self.timeline(country, platform).at(when)

    def for_row(self, row: MeasurementRow) -> Reported:
        return self.at(row.vantage.country, row.platform, row.started_at)


def reported_columns(reported: Reported) -> dict[str, str]:
    """The CSV cells for one measurement (:data:`REPORTED_COLUMNS`)."""
    event = reported.last_event
    return {
        "reported_status": reported.status.value,
        "last_event_date": event.date.isoformat() if event else "",
        "last_event": f"{event.kind}: {event.title}" if event else "",
    }


def store_index(store: Store, country: str | None = None) -> ReportedIndex:
    """A :class:`ReportedIndex` over the store's events (built-in ones included)."""
    return ReportedIndex(events_with_builtin(store, country))


def events_with_builtin(
    store: Store, country: str | None = None, platform: str | None = None
) -> list[TimelineEvent]:
    """The store's events, the built-in timeline included, in date order.

    The built-in events are loaded into a writable store (idempotent); a
    read-only one (an archived copy) gets them merged in memory instead.
    """
    from collectors.timeline import builtin_events, ensure_builtin_timeline

    if store.database.writable:
        ensure_builtin_timeline(store)
        return list(store.iter_events(country=country, platform=platform))
    events = list(store.iter_events(country=country, platform=platform))
    present = {_event_key(e) for e in events}
    for e in builtin_events():
        wanted = country in (None, e.country) and platform in (None, e.platform)
        if wanted and _event_key(e) not in present:
            events.append(e)
    return sort_events(events)


def _event_key(e: TimelineEvent) -> tuple[object, ...]:
    return (e.date, e.country, e.platform, e.kind, e.title)  # unique in storage


def annotate(
    store: Store, rows: Iterable[MeasurementRow]
) -> Iterator[tuple[MeasurementRow, Reported]]:
    """Each row with the status reported at its time, for its country and platform."""
    index = store_index(store)
    for row in rows:
        yield row, index.for_row(row)


Cells = tuple[str, str, str]


def _cells(reported: Reported) -> Cells:
    by_name = reported_columns(reported)
    return (by_name["reported_status"], by_name["last_event_date"], by_name["last_event"])


class ReportedCells:
    """:data:`REPORTED_COLUMNS` for (country, platform, instant), as a step function.

    The export asks for every row; :meth:`ReportedIndex.at` builds a
    :class:`Reported` and three strings each time (~10 us).  The answer only
    changes at the few instants of :meth:`ReportedTimeline.changes`, so the
    cells valid from each of them are made once per (country, platform) and a
    row costs one ``bisect`` (and returns the same tuple objects, which the
    SQLite export memoises as text).
    """

    def __init__(self, index: ReportedIndex) -> None:
        self._index = index
        self._steps: dict[tuple[str | None, str | None], tuple[list[dt.datetime], list[Cells]]] = {}

    def __call__(self, country: str | None, platform: str | None, when: dt.datetime) -> Cells:
        instants, cells = self._get(country, platform)
        return cells[_bisect_right(instants, when)]

    def changes(self, country: str | None, platform: str | None) -> list[dt.datetime]:
        """The sorted instants at which the cells may change; constant between them."""
        return self._get(country, platform)[0]

    def _get(
        self, country: str | None, platform: str | None
    ) -> tuple[list[dt.datetime], list[Cells]]:
        steps = self._steps.get((country, platform))
        if steps is None:
            steps = self._steps[(country, platform)] = self._build(country, platform)
        return steps

    def _build(
        self, country: str | None, platform: str | None
    ) -> tuple[list[dt.datetime], list[Cells]]:
        """cells[i] holds from instants[i - 1] (inclusive) to instants[i]; cells[0] before all."""
        unknown = _cells(Reported(ReportedStatus.UNKNOWN))
        if not country or not platform:
            return [], [unknown]
        timeline = self._index.timeline(country, platform)
        instants = list(timeline.changes())
        return instants, [unknown, *(_cells(timeline.at(when)) for when in instants)]


def reported_csv_columns(store: Store) -> list[CsvColumnGroup]:
    """CSV export provider: :data:`REPORTED_COLUMNS` for every exported row."""
    from storage.export import CsvColumnGroup

    cells = ReportedCells(store_index(store))
    fields = ("country", "platform", "started_at")
    return [CsvColumnGroup(REPORTED_COLUMNS, fields, cells, cells.changes)]


def register_csv_columns() -> None:
    """Add the reported-status columns to every CSV export (idempotent)."""
    from storage.export import register_columns

    register_columns(reported_csv_columns)
