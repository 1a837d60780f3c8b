"""CSV export: one row per measurement, stable documented columns.

The core columns are read straight from the summary columns with one lean
query (no ORM objects, no JSON decoding), streamed in batches, so a million
rows export in constant memory.  Other features add columns without editing
this module: :func:`register_columns` takes a provider that, given the
store, returns extra columns computed from the core values of each row (see
docs/data-format.md): a :class:`CsvColumn` reads the whole row, a
:class:`CsvColumnGroup` declares the few core fields its cells depend on, so
the SQLite fast path can select just those and keep its speed.

Cells are untrusted text: formula-looking text cells are prefixed with a
quote (spreadsheet formula injection), NULs and undecodable characters are
removed; numeric columns are written as numbers, never altered.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, TypeAlias

from sqlalchemy import ColumnElement, Select, select

from probe.observations import rfc3339
from storage.models import measurements, vantages
from storage.records import ALL_MEASUREMENTS, MeasurementFilter
from storage.store import Store, apply_filter
from storage.summary import LIST_SEPARATOR
from storage.text import FORMULA_START, clean_text, spreadsheet_safe

PROGRESS_EVERY = 50_000

m = measurements.c
v = vantages.c

# (name, column, free_text) in export order; the order is part of the format.
# Free-text columns may hold anything a network, an operator or an imported
# file said, so they are checked for formulas; the others hold closed
# vocabularies (UUIDs, Status/Method/Trigger/Failure values) or numbers.
CORE_SOURCES: tuple[tuple[str, ColumnElement[Any], bool], ...] = (
    ("id", m.id, False),
    ("started_at", m.started_at, False),
    ("vantage", v.name, True),
    ("country", v.country, True),
    ("asn", v.asn, False),
    ("network", v.network, True),
    ("domain", m.domain, True),
    ("input", m.input, True),
    ("platform", m.platform, True),
    ("verdict", m.status, False),
    ("blocking", m.blocking, False),
    ("trigger", m.trigger, False),
    ("resolver", m.resolver, True),
    ("duration_ms", m.duration_ms, False),
    ("dns_answers", m.dns_answers, True),
    ("control_answers", m.control_answers, True),
    ("first_failure", m.first_failure, False),
    ("tls_failures", m.tls_failures, False),
    ("http_status", m.http_status, False),
    ("http_failures", m.http_failures, False),
    ("http_title", m.http_title, True),
    ("blockpage", m.blockpage, True),
    ("tcp_ms", m.tcp_ms, False),
    ("tls_ms", m.tls_ms, False),
    ("http_ms", m.http_ms, False),
    ("probe_version", m.probe_version, True),
    ("classifier_version", m.classifier_version, True),
    ("helper_saw_site", m.helper_saw_site, False),
)
CORE_COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in CORE_SOURCES)
_TEXT_INDEXES = tuple(i for i, (_, _, text) in enumerate(CORE_SOURCES) if text)
_STARTED_AT = CORE_COLUMNS.index("started_at")


class CsvRecord(Protocol):
    """The core values of one row, by CSV column name, before formatting.

    ``started_at`` is a UTC datetime; list columns are ";"-joined text.
    """

    id: str
    started_at: dt.datetime
    vantage: str
    country: str | None
    domain: str
    platform: str | None
    verdict: str


@dataclass(frozen=True)
class CsvColumn:
    """An extra column: its header and how to compute its value from the core values."""

    name: str
    value: Callable[[CsvRecord], object]


@dataclass(frozen=True)
class CsvColumnGroup:
    """Extra columns computed together from a few named core values.

    ``values(*core values of fields)`` returns a tuple of one value per name
    (formatted like a :class:`CsvColumn` value).  Declaring the fields lets
    the SQLite fast path fetch only those instead of building a whole
    :class:`CsvRecord` per row; tuples made only of ``str`` and ``None`` are
    assumed to format the same way every time (the fast path memoises their
    text), so ``values`` should return the same tuples for recurring cells.

    ``changes``, for a group whose last field is ``started_at`` and whose
    values are a step function of it (the status reported at a time), gives
    for the other fields' values the sorted instants at which ``values`` may
    change; it is constant between them.  The fast path then calls
    ``values`` once per batch and key instead of once per row.
    """

    names: tuple[str, ...]
    fields: tuple[str, ...]
    values: Callable[..., tuple[object, ...]]
    changes: Callable[..., Sequence[dt.datetime]] | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.fields if name not in CORE_COLUMNS]
        if unknown or not self.names:
            raise ValueError(f"CSV column group {self.names}: unknown fields {unknown}")
        if self.changes is not None and self.fields[-1:] != ("started_at",):
            raise ValueError(f"CSV column group {self.names}: changes needs started_at last")

    def row_values(self, record: CsvRecord) -> tuple[object, ...]:
        """The group's values for one row (checked: a wrong shape would shift columns)."""
        values = self.values(*[getattr(record, name) for name in self.fields])
        if type(values) is not tuple or len(values) != len(self.names):
            raise TypeError(f"CSV column group {self.names} returned {values!r}")
        return values


ExtraColumns: TypeAlias = CsvColumn | CsvColumnGroup
ColumnProvider = Callable[[Store], Sequence[ExtraColumns]]
_providers: list[ColumnProvider] = []


def register_columns(provider: ColumnProvider) -> None:
    """Append the columns ``provider(store)`` returns to every CSV export.

    The provider runs once per export (so it can load what it needs, e.g.
    the timeline, before rows stream); registering the same provider twice
    has no effect.
    """
    if provider not in _providers:
        _providers.append(provider)


def export_csv(
    store: Store,
    out: TextIO,
    f: MeasurementFilter = ALL_MEASUREMENTS,
    *,
    extra: Sequence[ExtraColumns] | None = None,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> int:
    """Write matching measurements, oldest first, to ``out``; returns the row count.

    ``extra`` defaults to the columns of every registered provider.
    ``out`` should be opened with ``newline=""``.  SQLite takes a faster
    path (storage.export_sqlite) that writes exactly the same bytes, unless
    an extra :class:`CsvColumn` needs whole rows; there a large export may
    be split over up to ``jobs`` processes (storage.export_jobs), again
    with the same bytes.
    """
    columns = (
        list(extra)
        if extra is not None
        else [c for provider in _providers for c in provider(store)]
    )
    if store.database.is_sqlite:
        from storage.export_sqlite import export_sqlite

        return export_sqlite(store, out, f, columns, progress, jobs)
    return export_generic(store, out, f, columns, progress)


class Progress:
    """Tells ``report`` each multiple of :data:`PROGRESS_EVERY` the row count passes."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self.report = report
        self.done = 0

    def add(self, rows: int) -> None:
        self.reach(self.done + rows)

    def reach(self, done: int) -> None:
        """The count is now ``done`` (never less than before)."""
        before = self.done
        if done <= before:
            return
        self.done = done
        if self.report is not None:
            every = PROGRESS_EVERY
            for passed in range(before - before % every + every, done + 1, every):
                self.report(passed)


def export_generic(
    store: Store,
    out: TextIO,
    f: MeasurementFilter,
    extra: Sequence[ExtraColumns],
    progress: Callable[[int], None] | None = None,
) -> int:
    """The backend-neutral export: SQLAlchemy rows through :func:`write_csv`."""
    return write_csv(store.stream(core_select(f)), out, extra, progress)


def core_select(f: MeasurementFilter) -> Select[Any]:
    """The core columns, labelled with their CSV names, filtered and oldest first."""
    return apply_filter(
        select(*(column.label(name) for name, column, _ in CORE_SOURCES)).join(vantages), f, True
    )


def extra_names(extra: Sequence[ExtraColumns]) -> list[str]:
    """The headers of the extra columns, in order."""
    return [
        name for c in extra for name in (c.names if isinstance(c, CsvColumnGroup) else (c.name,))
    ]


def write_header(out: TextIO, extra: Sequence[ExtraColumns] = ()) -> None:
    csv.writer(out).writerow([*CORE_COLUMNS, *extra_names(extra)])


def extra_cells(record: CsvRecord, extra: Sequence[ExtraColumns]) -> list[object]:
    """The extra cells of one row as written (before CSV quoting)."""
    cells: list[object] = []
    for column in extra:
        if isinstance(column, CsvColumnGroup):
            cells += map(format_cell, column.row_values(record))
        else:
            cells.append(format_cell(column.value(record)))
    return cells


def write_csv(
    records: Iterable[Any],
    out: TextIO,
    extra: Sequence[ExtraColumns] = (),
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write rows carrying the core values (in :data:`CORE_COLUMNS` order)."""
    write_header(out, extra)
    writer = csv.writer(out)
    counter = Progress(progress)
    for record in records:
        cells = core_cells(record)
        if extra:
            cells += extra_cells(record, extra)
        writer.writerow(cells)
        counter.add(1)
    return counter.done


def core_cells(
    record: Iterable[Any],
    *,
    _text_indexes: tuple[int, ...] = _TEXT_INDEXES,
    _unsafe: str = FORMULA_START,
    _started_at: int = _STARTED_AT,
) -> list[Any]:
    """The core cells of one row as written (before CSV quoting)."""
    cells = list(record)
    # started_at is UTC (storage.models.UTCDateTime); isoformat is much
    # faster than strftime and gives the same text as rfc3339().
    cells[_started_at] = (
        cells[_started_at].replace(tzinfo=None).isoformat("T", "milliseconds") + "Z"
    )
    # Stored text is already free of NULs and lone surrogates
    # (storage.text.clean_text runs on every insert); only formulas remain.
    for i in _text_indexes:
        cell = cells[i]
        if cell and cell[0] in _unsafe:  # inlined spreadsheet_safe: the hot loop
            cells[i] = "'" + cell
    return cells


def format_cell(value: object) -> object:
    """An extra column's value as written: text made safe, numbers as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        value = LIST_SEPARATOR.join(str(x) for x in value)
    return spreadsheet_safe(clean_text(str(value)))
