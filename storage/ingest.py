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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, String, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from probe.errors import ProbeError
from probe.observations import to_dict
from storage.database import Database
from storage.models import measurements, observations, vantages
from storage.records import StoredMeasurement
from storage.registry import Registration
from storage.schema import SchemaError
from storage.store import measurement_values

m = measurements.c
v = vantages.c
_LIMITS = {c.name: c.type.length for c in measurements.c if isinstance(c.type, String)}


class Revoked(ProbeError):
    """The vantage's token was revoked (possibly while this batch was in flight)."""


class ForeignMeasurement(ProbeError):
    """A measurement id in the batch is already stored for another vantage."""


@dataclass(frozen=True)
class IngestResult:
    added: tuple[str, ...]
    duplicates: tuple[str, ...]  # already stored for this vantage (a retried batch)


def prepare(registration: Registration, item: StoredMeasurement) -> dict[str, Any]:
    """The measurement row to insert, attributed to the token's vantage.

    Raises SchemaError when a value does not fit its column: the database
    would refuse it, and it must be a 4xx for the sender, not a 500.
    """
    values = measurement_values(item.row, item.verdict, registration.id)
    for column, limit in _LIMITS.items():
        value = values.get(column)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise SchemaError(f"measurement {item.row.id}: {column} longer than {limit}")
    return values


def ingest(
    db: Database,
    registration: Registration,
    items: Sequence[StoredMeasurement],
    now: dt.datetime | None = None,
) -> IngestResult:
    """Store ``items`` for ``registration`` in one transaction (see the module docstring).

    ``items`` come from :func:`storage.schema.decode_record`, whose text is
    already cleaned for storage (so the observation trees are not walked twice).
    """
    ordered = sorted(items, key=lambda s: s.row.id)
    rows = [prepare(registration, s) for s in ordered]
    documents = {s.row.id: to_dict(s.observations) for s in ordered}
    when = now or dt.datetime.now(dt.UTC)
    dialect: Any = sqlite if db.is_sqlite else postgresql

    def run(conn: Connection) -> IngestResult:
        touched = conn.execute(
            update(vantages)
            .where(v.id == registration.id, v.revoked.is_(False))
            .values(last_seen_at=when)
        ).rowcount
        if not touched:
            raise Revoked(f"the token of vantage {registration.vantage.name!r} is revoked")
        added: set[str] = set()
        if rows:
            statement = (
                dialect.insert(measurements).on_conflict_do_nothing(index_elements=["id"])
            ).returning(m.id)
            added = set(conn.execute(statement, rows).scalars())
        if added:
            conn.execute(
                insert(observations),
                [{"measurement_id": i, "data": documents[i]} for i in sorted(added)],
            )
        duplicates = sorted(documents.keys() - added)
        if duplicates:
            _check_owner(conn, registration, duplicates)
        return IngestResult(tuple(sorted(added)), tuple(duplicates))

    return db.write(run)


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
