"""The SQLite fast path of the CSV export: the generic path's bytes, about twice as fast.

Profiling the generic export (cProfile, 200,000 rows) put the time in
per-cell work: ~0.2 us per column for sqlite3 to build each value,
SQLAlchemy's row and datetime processing, then csv.writer visiting 27
cells.  Here SQLite joins the text and integer columns into a few strings
itself (one ``printf`` per run of columns, cells separated by U+001F),
formats ``started_at`` from its stored text and quotes ``http_title``, so
Python handles 10 values per row instead of 27.  Floats stay Python's
(``str(float)`` is what csv.writer writes; SQLite's float text differs).

Whole batches are then checked at C speed: when no cell holds the separator
or starts like a formula, and no cell but the title needs quoting (the usual
case), the batch is written with one ``replace``.  Otherwise each row is
looked at: cells needing quotes are quoted as csv.writer would, and a row
with a formula-like cell, a separator in its data or a ``started_at`` not
in SQLAlchemy's canonical form is formatted by the generic code
(storage.export) from its own query.  Exports with extra columns use the
generic path: providers read whole rows.  Tests compare both paths' bytes.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from sqlalchemy import Connection, Float, Integer, Select, func, literal_column, select
from sqlalchemy.sql.expression import ColumnClause

from storage import export
from storage.export import (
    CORE_COLUMNS,
    CORE_SOURCES,
    CsvColumn,
    core_cells,
    core_select,
    export_generic,
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
# the CSV wants "YYYY-MM-DDTHH:MM:SS.mmmZ" (milliseconds truncated, as isoformat does).
_CANONICAL = "-".join(["[0-9]" * 4, "[0-9]" * 2, "[0-9]" * 2]) + " " + ":".join(["[0-9]" * 2] * 3)
_STARTED_AT_SQL = (
    f"CASE WHEN measurements.started_at GLOB '{_CANONICAL}.{'[0-9]' * 6}'"
    " THEN substr(measurements.started_at, 1, 10) || 'T'"
    " || substr(measurements.started_at, 12, 12) || 'Z'"
    f" ELSE {_TWO_SEPS} END"
)
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
    extra: Sequence[CsvColumn],
    progress: Callable[[int], None] | None = None,
) -> int:
    """:func:`storage.export.export_csv` on SQLite."""
    if extra:
        # Providers read whole rows (CsvRecord); SQLAlchemy builds those.
        return export_generic(store, out, f, extra, progress)
    db = store.database
    write_header(out)
    stmt = _line_select(f)
    floats = _FloatText({"": ""})
    count = 0
    with db.reading() as conn:
        cursor = conn.execute(stmt).cursor
        cursor.arraysize = BATCH
        try:
            for batch in iter(cursor.fetchmany, []):
                out.write(_format_batch(batch, conn, floats))
                before, count = count, count + len(batch)
                if progress is not None:
                    every = export.PROGRESS_EVERY
                    for done in range(before - before % every + every, count + 1, every):
                        progress(done)
        except sqlite3.Error as exc:
            raise db.error(exc) from exc
        finally:
            cursor.close()
    return count


def _line_select(f: MeasurementFilter) -> Select[Any]:
    """rowid, then the core cells in :data:`_LAYOUT`: runs of text and integer
    columns as one ``printf`` each (NULL prints as the empty string, integers
    as csv.writer writes them), the title quoted, floats as floats (NULL as '')."""
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
            run.append(_STARTED_AT_SQL)
        else:
            run.append(f"{column.table.name}.{column.name}")
    flush()
    return apply_filter(select(_rowid, *pieces).join(vantages), f, True)


def _layout() -> tuple[str, ...]:
    """The kinds of :func:`_line_select` pieces after rowid."""
    kinds = [
        "float" if isinstance(c.type, Float) else "title" if name == _TITLE else "text"
        for name, c, _ in CORE_SOURCES
    ]
    return tuple(k for i, k in enumerate(kinds) if k != "text" or kinds[i - 1 : i] != ["text"])


# _format_batch spells this layout out: a generic loop costs ~1 us per row.
_LAYOUT = ("text", "float", "text", "title", "text", "float", "float", "float", "text")
if _layout() != _LAYOUT:  # pragma: no cover - guards edits of storage.export
    raise RuntimeError("CSV core columns changed: update storage/export_sqlite.py")
_SEPARATORS = len(CORE_COLUMNS) - 1
_TITLE_INDEX = CORE_COLUMNS.index(_TITLE)
_OTHER_TEXT = tuple(i + 1 for i, kind in enumerate(_LAYOUT) if kind == "text")


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


def _format_batch(batch: Sequence[Any], conn: Connection, floats: _FloatText) -> str:
    """The CSV text of one batch of :func:`_line_select` rows."""
    f = floats
    lines = [
        f"{a}\x1f{d}\x1f{b}\x1f{title}\x1f{e}\x1f{f[t]}\x1f{f[s]}\x1f{f[h]}\x1f{c}"
        for _, a, d, b, title, e, t, s, h, c in batch
    ]
    whole = "\n".join(lines)
    if whole.count(SEP) == _SEPARATORS * len(lines) and _FORMULA_CELL.search(whole) is None:
        text = list(zip(*batch, strict=True))  # by column
        others = "".join(["".join(text[i]) for i in _OTHER_TEXT])
        if not ("," in others or '"' in others or "\n" in others or "\r" in others):
            # The common case, checked once per batch: no cell holds a separator
            # or starts like a formula, and only titles need quoting.
            return "\r\n".join(lines).replace(SEP, ",") + "\r\n"
    out: list[str] = []
    for row, line in zip(batch, lines, strict=True):
        if line.count(SEP) != _SEPARATORS or _FORMULA_CELL.search(line):
            out.append(_csv_line(_generic_cells(conn, row[0])))
            continue
        cells = line.split(SEP)
        title = cells[_TITLE_INDEX]
        if title.startswith('"'):  # undo SQLite's quoting; _quote redoes it
            cells[_TITLE_INDEX] = title[1:-1].replace('""', '"')
        out.append(_quote(SEP.join(cells)).replace(SEP, ",") + "\r\n")
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


def _generic_cells(conn: Connection, rowid: int) -> list[Any]:
    """The row's cells as the generic path makes them (rare rows only)."""
    stmt = core_select(ALL_MEASUREMENTS).where(_rowid == rowid)
    return core_cells(conn.execute(stmt).one())
