"""The probe's side of uploading: which measurements a collector has not confirmed.

Nothing is queued: the backlog for a collector is every stored measurement
of this vantage without a row in ``uploads`` for that collector, and a row is
written only after the collector confirmed the measurement.  So a measurement
saved while an upload runs (or replayed from the daemon's spool later) is
simply in the next batch, a crash between sending and confirming re-sends
the batch (the collector is idempotent on the id), and uploading never
deletes or changes a measurement.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Connection, and_, delete, exists, func, literal, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from probe.observations import DomainObservations, from_dict, to_dict
from storage.database import Database
from storage.jsonl import SCHEMA
from storage.models import measurements, uploads, vantages
from storage.records import Vantage
from storage.store import _full_select, stored_verdict

m = measurements.c
u = uploads.c
v = vantages.c


def collector_key(url: str) -> str:
    """The collector as recorded in ``uploads``: its URL without a trailing slash."""
    return url.strip().rstrip("/")


class Outbox:
    """Backlog, batches and confirmations for one collector and one vantage name."""

    def __init__(
        self,
        db: Database,
        collector: str,
        vantage: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._db = db
        self.collector = collector_key(collector)
        self.vantage = vantage
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def _unconfirmed(self, in_start_order: bool = False) -> Any:
        """``in_start_order``: for a scan in (started_at, id) order. SQLite would
        otherwise take the vantage's index and sort all of its backlog for
        every page (a 100,000 backlog spent most of its time there); ``+ 0``
        keeps vantage_id off its index, SQLite's documented way to steer it."""
        confirmed = exists().where(u.collector == self.collector, u.measurement_id == m.id)
        conditions = [~confirmed]
        if self.vantage is not None and in_start_order and self._db.is_sqlite:
            mine = select(v.id).where(v.name == self.vantage).scalar_subquery()
            conditions.append((m.vantage_id + 0).in_(mine))
        elif self.vantage is not None:
            conditions.append(v.name == self.vantage)
        return and_(*conditions)

    def backlog(self) -> int:
        """How many measurements the collector has not confirmed yet."""
        stmt = select(func.count()).select_from(measurements.join(vantages))
        with self._db.reading() as conn:
            return int(conn.execute(stmt.where(self._unconfirmed())).scalar_one())

    def others(self) -> int:
        """Measurements of other vantages (imports): never uploaded with this token."""
        if self.vantage is None:
            return 0
        stmt = select(func.count()).select_from(measurements.join(vantages))
        with self._db.reading() as conn:
            return int(conn.execute(stmt.where(v.name != self.vantage)).scalar_one())

    def batches(self, size: int) -> Iterator[list[Outgoing]]:
        """Unconfirmed measurements, oldest first, ``size`` at a time, as upload lines.

        Pages by (started_at, id) after the last one handed out, so a batch
        the caller did not confirm is not handed out again in this pass (an
        upload stops at the first failure anyway).
        """
        after: tuple[dt.datetime, str] | None = None
        while True:
            stmt = _full_select(raw=True).where(self._unconfirmed(in_start_order=True))
            if after is not None:
                last = (literal(after[0], m.started_at.type), literal(after[1], m.id.type))
                stmt = stmt.where(tuple_(m.started_at, m.id) > tuple_(*last))
            stmt = stmt.order_by(m.started_at, m.id).limit(size)
            with self._db.reading() as conn:
                rows = conn.execute(stmt).all()
            if not rows:
                return
            yield [_outgoing(r) for r in rows]
            after = (rows[-1].started_at, rows[-1].id)

    def confirm(self, ids: Iterable[str]) -> int:
        """Record ``ids`` as confirmed by the collector; returns how many were new."""
        now = self._clock()
        rows = [{"collector": self.collector, "measurement_id": i, "uploaded_at": now} for i in ids]
        if not rows:
            return 0
        dialect: Any = sqlite if self._db.is_sqlite else postgresql
        statement = (
            dialect.insert(uploads)
            .on_conflict_do_nothing(index_elements=["collector", "measurement_id"])
            .returning(u.measurement_id)
        )

        def run(conn: Connection) -> int:
            return len(conn.execute(statement, rows).all())

        return self._db.write(run)

    def forget(self) -> int:
        """Forget which of this vantage's measurements the collector confirmed, so
        all of them are the backlog again (a collector rebuilt from scratch at the
        same URL); returns how many confirmations were dropped.  Only this
        bookkeeping is deleted, never a measurement; re-sent ones the collector
        still has are counted there as duplicates."""
        mine = select(m.id).select_from(measurements.join(vantages))
        if self.vantage is not None:
            mine = mine.where(v.name == self.vantage)
        statement = delete(uploads).where(u.collector == self.collector, u.measurement_id.in_(mine))

        def run(conn: Connection) -> int:
            return int(conn.execute(statement).rowcount)

        return self._db.write(run)

    def last_upload(self) -> dt.datetime | None:
        """When the collector last confirmed a measurement."""
        stmt = select(func.max(u.uploaded_at)).where(u.collector == self.collector)
        with self._db.reading() as conn:
            value: dt.datetime | None = conn.execute(stmt).scalar()
        return value


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One measurement to upload: its id and its JSON Lines record (storage.jsonl's)."""

    id: str
    line: bytes


def _outgoing(r: Row[Any]) -> Outgoing:
    """The record of a row of _full_select(raw=True), encoded once in C.

    The stored observations are read into storage.wire's mirrors (unknown keys
    ignored, defaults filled in, as from_dict does for an older release's
    documents) instead of dataclasses and back, the slow part of an upload.
    A document they do not take (an older release's time format, a value out
    of range) goes through from_dict and to_dict as before.
    """
    try:
        observations: Any = _reader().decode(r.data)
    except msgspec.DecodeError:  # msgspec.ValidationError is a DecodeError
        observations = to_dict(from_dict(DomainObservations, json.loads(r.data)))
    record = {
        "schema": SCHEMA,
        "id": r.id,
        "vantage": Vantage(r.vantage_name, r.country, r.asn, r.network, r.notes),
        "verdict": stored_verdict(r),
        "observations": observations,
    }
    return Outgoing(r.id, _ENCODER.encode(record))


@functools.cache
def _reader() -> msgspec.json.Decoder[Any]:
    from storage.wire import mirror

    return msgspec.json.Decoder(mirror(DomainObservations, strict=False))


_ENCODER = msgspec.json.Encoder()
