"""A collector's write path: one uploaded batch stored whole, or not at all.

The batch is inserted in one transaction with ``ON CONFLICT DO NOTHING`` on
the measurement id, so a retried batch (the probe never saw the answer to the
first try) adds nothing and says which ids were already there, and two
collector processes storing the same batch at once store it once.  The
transaction starts by touching the vantage's row only if its token is not
revoked: that row lock orders uploads against ``vantage revoke``, so nothing
is accepted after a revoke commits.  Rows are inserted in id order, so two
concurrent inserts of overlapping batches take their locks in the same
order and cannot deadlock.

On PostgreSQL the rows go in as one statement per batch, every column an
array parameter unnested on the server (a bulk insert whose text does not
grow with the batch, so it is planned once), and the observations are the
JSON text storage.wire validated, stored as it is (storage.models.JSONText):
no per-row statements, no decode and re-encode of the documents.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Connection, String, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from probe.errors import ProbeError
from storage.database import Database
from storage.models import measurements, observations, vantages
from storage.registry import Registration
from storage.schema import SchemaError
from storage.store import measurement_values
from storage.wire import Received

m = measurements.c
v = vantages.c
_LIMITS = [
    (c.name, c.type.length)
    for c in measurements.c
    if isinstance(c.type, String) and c.type.length is not None
]


class Revoked(ProbeError):
    """The vantage's token was revoked (possibly while this batch was in flight)."""


class ForeignMeasurement(ProbeError):
    """A measurement id in the batch is already stored for another vantage."""


@dataclass(frozen=True)
class IngestResult:
    added: tuple[str, ...]
    duplicates: tuple[str, ...]  # already stored for this vantage (a retried batch)


def prepare(
    registration: Registration, item: Received, stored_at: dt.datetime | None = None
) -> dict[str, Any]:
    """The measurement row to insert, attributed to the token's vantage.

    Raises SchemaError when a value does not fit its column: the database
    would refuse it, and it must be a 4xx for the sender, not a 500.
    """
    values = measurement_values(item.row, item.verdict, registration.id, stored_at, clean=False)
    for column, limit in _LIMITS:
        value = values[column]
        if isinstance(value, str) and len(value) > limit:
            raise SchemaError(f"measurement {item.row.id}: {column} longer than {limit}")
    return values


def ingest(
    db: Database,
    registration: Registration,
    items: Sequence[Received],
    now: dt.datetime | None = None,
) -> IngestResult:
    """Store ``items`` for ``registration`` in one transaction (see the module docstring).

    ``items`` come from :func:`storage.wire.decode_line` (or storage.schema),
    whose text is already cleaned for storage.
    """
    when = now or dt.datetime.now(dt.UTC)
    ordered = sorted(items, key=lambda r: r.row.id)
    rows = [prepare(registration, r, when) for r in ordered]
    documents = {r.row.id: r.document for r in ordered}
    insert_rows = _insert_sqlite if db.is_sqlite else _insert_postgresql

    def run(conn: Connection) -> IngestResult:
        touched = conn.execute(
            update(vantages)
            .where(v.id == registration.id, v.revoked.is_(False))
            .values(last_seen_at=when)
        ).rowcount
        if not touched:
            raise Revoked(f"the token of vantage {registration.vantage.name!r} is revoked")
        added = insert_rows(conn, rows, documents) if rows else set()
        duplicates = sorted(documents.keys() - added)
        if duplicates:
            _check_owner(conn, registration, duplicates)
        return IngestResult(tuple(sorted(added)), tuple(duplicates))

    return db.write(run)


def _insert_sqlite(
    conn: Connection, rows: list[dict[str, Any]], documents: dict[str, str]
) -> set[str]:
    """Row by row through SQLAlchemy: a trial collector's pace is the probe's."""
    statement = (
        sqlite.insert(measurements).on_conflict_do_nothing(index_elements=["id"])
    ).returning(m.id)
    added = set(conn.execute(statement, rows).scalars())
    if added:
        conn.execute(
            insert(observations),
            [{"measurement_id": i, "data": json.loads(documents[i])} for i in sorted(added)],
        )
    return added


def _insert_postgresql(
    conn: Connection, rows: list[dict[str, Any]], documents: dict[str, str]
) -> set[str]:
    """Both tables in one statement; the ids of the rows that were new."""
    params: dict[str, Any] = {name: [row[name] for row in rows] for name in _COLUMNS}
    for name in _JSON_COLUMNS:
        params[name] = [None if x is None else _json(x) for x in params[name]]
    params["documents"] = [documents[row["id"]] for row in rows]
    return set(conn.exec_driver_sql(_BULK_INSERT, params).scalars())


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _bulk_insert_sql() -> tuple[list[str], frozenset[str], str]:
    """``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` for measurements,
    then the observations of exactly the rows it added (the CTE's RETURNING)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    names = [c.name for c in measurements.c]
    json_columns = frozenset(
        c.name for c in measurements.c if c.type.compile(dialect=dialect) == "JSONB"
    )
    arrays = ", ".join(
        f"%({c.name})b::{'text' if c.name in json_columns else c.type.compile(dialect=dialect)}[]"
        for c in measurements.c
    )
    columns = ", ".join(names)
    selected = ", ".join(f"{n}::jsonb" if n in json_columns else n for n in names)
    sql = (
        f"WITH batch AS (SELECT * FROM unnest({arrays}) AS b({columns})), "
        f"added AS (INSERT INTO measurements ({columns}) SELECT {selected} FROM batch "
        "ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id) "
        "INSERT INTO observations (measurement_id, data) "
        "SELECT d.id, d.data FROM unnest(%(id)b::text[], %(documents)b::text[]) AS d(id, data) "
        "WHERE d.id IN (SELECT id FROM added) RETURNING measurement_id"
    )
    return names, json_columns, sql


_COLUMNS, _JSON_COLUMNS, _BULK_INSERT = _bulk_insert_sql()


def _check_owner(conn: Connection, registration: Registration, ids: list[str]) -> None:
    """Refuse (and so roll back) a batch that re-sends another vantage's measurement."""
    stmt = (
        select(m.id, v.name)
        .join(vantages, v.id == m.vantage_id)
        .where(m.id.in_(ids), v.name != registration.vantage.name)
        .limit(1)
    )
    other = conn.execute(stmt).first()
    if other is not None:
        raise ForeignMeasurement(f"measurement {other.id} is already stored for another vantage")
