"""The SQLite fast path of the CSV export: the generic path's bytes, about twice as fast.

Profiling the generic export (cProfile, 200,000 rows) put the time in
per-cell work: ~0.2 us per column for sqlite3 to build each value,
SQLAlchemy's row and datetime processing, then csv.writer visiting 27
cells.  Here SQLite joins the text and integer columns into a few strings
itself (one ``printf`` per run of columns, cells separated by U+001F) and
quotes ``http_title``, so Python handles 12 values per row instead of 27;
``started_at`` comes as stored and is sliced into CSV form in Python (a
``GLOB`` and ``substr`` per row cost more in SQLite).  Floats stay Python's
(``str(float)`` is what csv.writer writes; SQLite's float text differs).

Whole batches are then checked at C speed: when every ``started_at`` has the
canonical stored form, no cell holds the separator or starts like a
formula, and no cell but the title needs quoting (the usual case), the batch
is written with one ``replace``.  Otherwise each row is looked at: cells
needing quotes are quoted as csv.writer would, and a row with a
formula-like cell, a separator in its data or an odd ``started_at`` is
formatted by the generic code (storage.export) from its own query.

Extra columns declared as a :class:`~storage.export.CsvColumnGroup` (the
timeline's reported status) stay on this path: their fields are selected
after the core pieces, the group's function runs over whole batch columns
(``map``), and the CSV text of each distinct tuple it returns is made once.
A group that declares its ``changes`` (a step function of time, like the
reported status) is called once per batch and key when the batch falls
between two changes, which is nearly always.  An extra
:class:`~storage.export.CsvColumn` reads whole rows, so such exports take
the generic path.  Tests compare both paths' bytes.

A large export is also split over processes: storage.export_jobs.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from sqlalchemy import Connection, Float, Integer, Select, String, func, literal_column, select
from sqlalchemy.sql.expression import ColumnClause

from storage.database import Database
from storage.export import (
    CORE_COLUMNS,
    CORE_SOURCES,
    CsvColumnGroup,
    ExtraColumns,
    Progress,
    core_cells,
    core_select,
    export_generic,
    extra_cells,
    format_cell,
    write_header,
)
from storage.models import vantages
from storage.records import ALL_MEASUREMENTS, MeasurementFilter
from storage.store import Store, apply_filter
from storage.text import FORMULA_START

BATCH = 2000  # rows per fetchmany and per write
SEP = "\x1f"  # field separator inside SQLite-built strings; never written
_TWO_SEPS = f"char({ord(SEP)}, {ord(SEP)})"  # an extra separator: "use the generic code"
_rowid: ColumnClause[int] = literal_column("measurements.rowid", Integer)
# SQLAlchemy stores a naive UTC datetime on SQLite as "YYYY-MM-DD HH:MM:SS.ffffff";
# the CSV wants "YYYY-MM-DDTHH:MM:SS.mmmZ" (milliseconds truncated, as isoformat
# does).  The stored text is fetched as is and sliced in Python, batches
# checked by one regex: a GLOB and substr() in SQL cost more per row.
_TIME = "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{6}"
_CANONICAL_TIME = re.compile(_TIME)
_CANONICAL_TIMES = re.compile(f"{_TIME}(?:\n{_TIME})*")
_STARTED_AT: ColumnClause[str] = literal_column("measurements.started_at", String)
_PLACEHOLDER_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)
_FROM_ISO = dt.datetime.fromisoformat
_ISO_UTC = "{}+00:00".format
# Page titles routinely hold commas and quotes, so SQLite quotes that one
# column itself, as csv.writer would; a title starting like a formula goes to
# the generic code.
_TITLE_SQL = (
    "CASE WHEN unicode(measurements.http_title) IN ("
    + ", ".join(str(ord(c)) for c in FORMULA_START)
    + f") THEN {_TWO_SEPS}"
    " WHEN measurements.http_title GLOB '*[,\"' || char(10, 13) || ']*'"
    " THEN '\"' || replace(measurements.http_title, '\"', '\"\"') || '\"'"
    " ELSE ifnull(measurements.http_title, '') END"
)
_TITLE = "http_title"
# A separator followed by a formula character: a cell that may need a quote
# prefix (or a number that must not get one) - decided by the generic code.
_FORMULA_CELL = re.compile(SEP + "[" + re.escape(FORMULA_START) + "]")


def export_sqlite(
    store: Store,
    out: TextIO,
    f: MeasurementFilter,
    extra: Sequence[ExtraColumns],
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> int:
    """:func:`storage.export.export_csv` on SQLite (``jobs``: see storage.export_jobs)."""
    groups = [c for c in extra if isinstance(c, CsvColumnGroup)]
    if len(groups) != len(extra):
        # A CsvColumn reads whole rows (CsvRecord); SQLAlchemy builds those.
        return export_generic(store, out, f, extra, progress)
    db = store.database
    write_header(out, groups)
    counter = Progress(progress)
    if jobs > 1:
        from storage.export_jobs import export_split

        count = export_split(db, out, f, groups, counter, jobs)
        if count is not None:
            return count
    with db.reading() as conn:
        return write_rows(db, conn, out, f, groups, counter.add)


def write_rows(
    db: Database,
    conn: Connection,
    out: TextIO,
    f: MeasurementFilter,
    groups: Sequence[CsvColumnGroup],
    counted: Callable[[int], None],
    started: Callable[[], None] | None = None,
) -> int:
    """Write the CSV rows (no header) of ``f``, one batch at a time; returns their number.

    ``counted`` hears each batch's row count; ``started`` is called once the
    query has begun, i.e. once this connection's snapshot of the database is taken.
    """
    stmt = _line_select(f, groups)
    floats = _FloatText({"": ""})
    extras = _Extras(groups) if groups else None
    count = 0
    cursor = conn.execute(stmt).cursor
    try:
        if started is not None:
            started()
        cursor.arraysize = BATCH
        for batch in iter(cursor.fetchmany, []):
            out.write(_format_batch(batch, conn, floats, extras))
            count += len(batch)
            counted(len(batch))
    except sqlite3.Error as exc:
        raise db.error(exc) from exc
    finally:
        cursor.close()
    return count


def _line_select(f: MeasurementFilter, groups: Sequence[CsvColumnGroup] = ()) -> Select[Any]:
    """rowid, then the core cells in :data:`_LAYOUT`: runs of text and integer
    columns as one ``printf`` each (NULL prints as the empty string, integers
    as csv.writer writes them), started_at as stored, the title quoted, floats
    as floats (NULL as ''); then the fields of the column groups but started_at."""
    pieces: list[Any] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            fmt = SEP.join(["%s"] * len(run))
            pieces.append(literal_column(f"printf('{fmt}', {', '.join(run)})"))
            run.clear()

    for name, column, _ in CORE_SOURCES:
        if isinstance(column.type, Float):
            flush()
            pieces.append(func.ifnull(column, ""))
        elif name == _TITLE:
            flush()
            pieces.append(literal_column(_TITLE_SQL))
        elif name == "started_at":
            flush()
            pieces.append(_STARTED_AT)
        else:
            run.append(f"{column.table.name}.{column.name}")
    flush()
    for group in groups:
        pieces += (_SOURCES[name] for name in group.fields if name != "started_at")
    return apply_filter(select(_rowid, *pieces).join(vantages), f, True)


def _layout() -> tuple[str, ...]:
    """The kinds of :func:`_line_select` pieces after rowid."""
    kinds = [
        "float"
        if isinstance(c.type, Float)
        else "title"
        if name == _TITLE
        else "time"
        if name == "started_at"
        else "text"
        for name, c, _ in CORE_SOURCES
    ]
    return tuple(k for i, k in enumerate(kinds) if k != "text" or kinds[i - 1 : i] != ["text"])


# _format_batch spells this layout out: a generic loop costs ~1 us per row.
_LAYOUT = (
    "text", "time", "text", "float", "text", "title", "text", "float", "float", "float", "text"
)  # fmt: skip
if _layout() != _LAYOUT:  # pragma: no cover - guards edits of storage.export
    raise RuntimeError("CSV core columns changed: update storage/export_sqlite.py")
_SEPARATORS = len(CORE_COLUMNS) - 1
_SOURCES = {name: column for name, column, _ in CORE_SOURCES}
_TITLE_INDEX = CORE_COLUMNS.index(_TITLE)
_OTHER_TEXT = tuple(i + 1 for i, kind in enumerate(_LAYOUT) if kind == "text")
_TIME_COLUMN = 1 + _LAYOUT.index("time")
_TAIL = 1 + len(_LAYOUT)  # rowid, core pieces, then column group fields


class _FloatText(dict[object, str]):
    """str() of floats that recur (rounded medians), memoised.

    0.0 and -0.0 are equal keys with different text, and NaN never equals
    itself, so neither is kept; the size is capped so memory stays flat.
    """

    LIMIT = 100_000

    def __missing__(self, value: object) -> str:
        text = str(value)
        if value and value == value:
            if len(self) >= self.LIMIT:
                self.clear()
            self[value] = text
        return text


class _CellText(dict[tuple[object, ...], str]):
    """The CSV text (",a,b") of a column group's value tuples, memoised.

    Only tuples of ``str`` and ``None`` are kept: equal tuples of other types
    can format differently (``1`` and ``True``, ``0.0`` and ``-0.0``).  Text
    holding the separator becomes two separators, which sends the row to the
    generic code.  The size is capped so memory stays flat.
    """

    LIMIT = 10_000

    def __init__(self, group: CsvColumnGroup) -> None:
        super().__init__()
        self.group = group

    def __missing__(self, values: tuple[object, ...]) -> str:
        if type(values) is not tuple or len(values) != len(self.group.names):
            raise TypeError(f"CSV column group {self.group.names} returned {values!r}")
        # A leading cell: csv.writer quotes a row made of one empty cell.
        text = _csv_line(["", *map(format_cell, values)])[:-2]
        if SEP in text:
            text = SEP * 2
        if all(type(v) is str or v is None for v in values):
            if len(self) >= self.LIMIT:
                self.clear()
            self[values] = text
        return text


class _Extras:
    """The column groups' cells for whole batches, as CSV text per row."""

    def __init__(self, groups: Sequence[CsvColumnGroup]) -> None:
        plan: list[tuple[CsvColumnGroup, list[tuple[int, bool]], _CellText]] = []
        index = _TAIL
        for group in groups:
            fields: list[tuple[int, bool]] = []
            for name in group.fields:
                if name == "started_at":
                    fields.append((_TIME_COLUMN, True))
                else:
                    fields.append((index, False))
                    index += 1
            plan.append((group, fields, _CellText(group)))
        self.plan = plan
        self.groups = groups

    def text(self, columns: Sequence[Sequence[Any]], ordered: bool) -> list[str]:
        """One string per row: every group's cells, each preceded by a comma.

        ``ordered``: every ``started_at`` has the canonical stored form, so the
        batch (sorted by that text) runs from its first row's time to its last's.
        """
        texts: list[list[str]] = []
        for group, fields, memo in self.plan:
            if ordered and group.changes is not None:
                keys = list(zip(*[columns[i] for i, _ in fields[:-1]], strict=True))
                texts.append(_stepped(group, memo, keys, columns[_TIME_COLUMN]))
                continue
            args = [_utc_times(columns[i]) if is_time else columns[i] for i, is_time in fields]
            texts.append(list(map(memo.__getitem__, map(group.values, *args))))
        return texts[0] if len(texts) == 1 else ["".join(row) for row in zip(*texts, strict=True)]


def _stepped(
    group: CsvColumnGroup, memo: _CellText, keys: list[tuple[Any, ...]], times: Sequence[str]
) -> list[str]:
    """A step-function group's text per row: one ``values`` call per key whose
    cells cannot change between the batch's first and last time, a call per
    row only for the others (a batch that spans a change)."""
    assert group.changes is not None
    first, last = _utc_time(times[0]), _utc_time(times[-1])
    constant: dict[tuple[Any, ...], str] = {}
    distinct = set(keys)
    for key in distinct:
        changes = group.changes(*key)
        if bisect.bisect_right(changes, first) == bisect.bisect_right(changes, last):
            constant[key] = memo[group.values(*key, first)]
    if len(constant) == len(distinct):
        return list(map(constant.__getitem__, keys))
    return [
        constant[key] if key in constant else memo[group.values(*key, _utc_time(time))]
        for key, time in zip(keys, times, strict=True)
    ]


def _utc_times(texts: Sequence[str]) -> Sequence[dt.datetime]:
    """Stored ``started_at`` texts as UTC datetimes.

    Only rows in the canonical form keep their value (the others are
    formatted by the generic code, which parses them as SQLAlchemy does), so
    text that does not parse becomes a placeholder.
    """
    try:
        return list(map(_FROM_ISO, map(_ISO_UTC, texts)))
    except (TypeError, ValueError):
        return [_utc_time(text) for text in texts]


def _utc_time(text: str) -> dt.datetime:
    try:
        return _FROM_ISO(_ISO_UTC(text))
    except (TypeError, ValueError):
        return _PLACEHOLDER_TIME


def _format_batch(
    batch: Sequence[Any], conn: Connection, floats: _FloatText, extras: _Extras | None = None
) -> str:
    """The CSV text of one batch of :func:`_line_select` rows."""
    f = floats
    columns = list(zip(*batch, strict=True))
    ordered = _CANONICAL_TIMES.fullmatch("\n".join(columns[_TIME_COLUMN])) is not None
    tails: Sequence[str] = extras.text(columns, ordered) if extras else [""] * len(batch)
    lines = [
        f"{i}\x1f{w[:10]}T{w[11:23]}Z\x1f{a}\x1f{d}\x1f{b}\x1f{title}\x1f{e}"
        f"\x1f{f[t]}\x1f{f[s]}\x1f{f[h]}\x1f{c}{x}"
        for i, w, a, d, b, title, e, t, s, h, c, x in zip(*columns[1:_TAIL], tails, strict=True)
    ]
    whole = "\n".join(lines)
    if ordered and whole.count(SEP) == _SEPARATORS * len(lines) and not _FORMULA_CELL.search(whole):
        others = "".join(["".join(columns[i]) for i in _OTHER_TEXT])
        if not ("," in others or '"' in others or "\n" in others or "\r" in others):
            # The common case, checked once per batch: no cell holds a separator
            # or starts like a formula, and only titles need quoting (the
            # extra cells are CSV text already).
            return "\r\n".join(lines).replace(SEP, ",") + "\r\n"
    out: list[str] = []
    for row, line, tail in zip(batch, lines, tails, strict=True):
        line = line[: len(line) - len(tail)]
        if (
            line.count(SEP) != _SEPARATORS
            or _FORMULA_CELL.search(line)
            or SEP in tail
            or not _CANONICAL_TIME.fullmatch(row[_TIME_COLUMN])
        ):
            out.append(_csv_line(_generic_cells(conn, row[0], extras)))
            continue
        cells = line.split(SEP)
        title = cells[_TITLE_INDEX]
        if title.startswith('"'):  # undo SQLite's quoting; _quote redoes it
            cells[_TITLE_INDEX] = title[1:-1].replace('""', '"')
        out.append(_quote(SEP.join(cells)).replace(SEP, ",") + tail + "\r\n")
    return "".join(out)


def _quote(line: str) -> str:
    """``line`` with each cell holding a comma, quote, CR or LF quoted as csv.writer does."""
    find, rfind = line.find, line.rfind
    size = len(line)
    missing = size + 1  # find() % missing: -1 ("not found") becomes size, after every index
    pieces: list[str] = []
    done = 0  # line[:done] is in pieces
    while True:
        first = min(
            find(",", done) % missing,
            find('"', done) % missing,
            find("\n", done) % missing,
            find("\r", done) % missing,
        )
        if first == size:
            break
        begin = max(rfind(SEP, done, first) + 1, done)
        end = find(SEP, first) % missing
        pieces += (line[done:begin], '"', line[begin:end].replace('"', '""'), '"')
        done = end
    pieces.append(line[done:])
    return "".join(pieces)


def _csv_line(cells: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def _generic_cells(conn: Connection, rowid: int, extras: _Extras | None) -> list[Any]:
    """The row's cells as the generic path makes them (rare rows only)."""
    stmt = core_select(ALL_MEASUREMENTS).where(_rowid == rowid)
    record = conn.execute(stmt).one()
    cells = core_cells(record)
    if extras:
        cells += extra_cells(record, extras.groups)
    return cells
