"""The measurement store: save, query, re-classify.

Every measurement is kept with its full observations so that it can be
audited and classified again when the classifier improves; the verdict and
summary columns beside them make listings and exports cheap.  Each public
method either succeeds or raises :class:`probe.errors.StorageError` with one
line: a measurement is never dropped silently.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from probe.errors import UsageError
from probe.observations import DomainObservations, from_dict, to_dict
from probe.verdict import Method, Status, Trigger, Verdict
from storage import migrate as migrations
from storage.database import DEFAULT_BUSY_TIMEOUT_S, Database, resolve_url
from storage.models import measurements, observations, timeline_events, vantages
from storage.records import (
    ALL_MEASUREMENTS,
    MeasurementFilter,
    MeasurementRow,
    StoredMeasurement,
    TimelineEvent,
    Vantage,
)
from storage.summary import LIST_SEPARATOR, measurement_row
from storage.text import clean_text, clean_tree

STREAM_BATCH = 1000  # rows fetched per round trip when streaming
IMPORT_BATCH = 500  # measurements per transaction when importing
RECLASSIFY_BATCH = 200
MIN_ID_PREFIX = 8
_UUID_CHARS = frozenset("0123456789abcdef-")

m = measurements.c
v = vantages.c

# The columns behind a MeasurementRow, in one flat select.
ROW_COLUMNS = (
    m.id,
    m.vantage_id,
    v.name.label("vantage_name"),
    v.country,
    v.asn,
    v.network,
    v.notes,
    m.domain,
    m.input,
    m.platform,
    m.started_at,
    m.duration_ms,
    m.status,
    m.blocking,
    m.trigger,
    m.resolver,
    m.probe_version,
    m.classifier_version,
    m.blockpage,
    m.dns_answers,
    m.control_answers,
    m.first_failure,
    m.tls_failures,
    m.http_status,
    m.http_failures,
    m.http_title,
    m.helper_saw_site,
    m.tcp_ms,
    m.tls_ms,
    m.http_ms,
)


class Store:
    """A connection to one reachprobe database; use as a context manager."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._vantage_ids: dict[str, int] = {}

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        migrate: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        readonly: bool = False,
        existing: bool = False,
    ) -> Store:
        """Open ``url`` (None: ``$PROBE_DB`` or the default SQLite file).

        With ``migrate`` the schema is brought up to date first; otherwise the
        database is only contacted, so a bad URL still fails here.  With
        ``readonly`` (every command that only reads) nothing is created and a
        SQLite file this process cannot write is read as it is: its schema
        must then be this release's.  With ``existing`` a missing SQLite file is
        an error, not a new database.
        """
        db = Database(resolve_url(url), busy_timeout, readonly=readonly, existing=existing)
        try:
            if migrate and not db.writable:
                migrations.require_current(db)
            elif migrate:
                migrations.upgrade(db)
            else:
                with db.reading() as conn:
                    conn.exec_driver_sql("SELECT 1")
        except BaseException:
            db.dispose()
            raise
        return cls(db)

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return self._db.display

    @property
    def database(self) -> Database:
        return self._db

    @property
    def created(self) -> bool:
        """Whether opening created a new (SQLite) database file."""
        return self._db.created

    def __repr__(self) -> str:
        return f"Store({self.url})"

    __str__ = __repr__

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def save(
        self,
        obs: DomainObservations,
        verdict: Verdict,
        vantage: Vantage,
        measurement_id: str | None = None,
    ) -> str:
        """Store one measurement in one transaction and return its UUID.

        ``measurement_id`` (new if None) lets a caller that may also spool
        the measurement use one id for both: importing it later is then a no-op.
        """
        measurement_id = measurement_id or str(uuid.uuid4())
        row = measurement_row(measurement_id, vantage, obs, verdict)
        data = clean_tree(to_dict(obs))
        self._db.write(lambda conn: self._insert(conn, row, verdict, data, ignore_existing=False))
        return measurement_id

    def import_measurements(
        self, items: Iterable[StoredMeasurement], *, batch_size: int = IMPORT_BATCH
    ) -> tuple[int, int]:
        """Store measurements that already have an id; returns (added, already present).

        Idempotent: a measurement whose UUID is stored is skipped, so an
        export can be imported twice without duplicates.  ``items`` is
        consumed lazily, ``batch_size`` per transaction: memory stays flat.
        """
        added = skipped = 0
        batch: list[StoredMeasurement] = []

        def flush(conn: Connection) -> int:
            return sum(
                self._insert(conn, s.row, s.verdict, clean_tree(to_dict(s.observations)))
                for s in batch
            )

        for item in items:
            batch.append(item)
            if len(batch) >= batch_size:
                n = self._db.write(flush)
                added, skipped, batch = added + n, skipped + len(batch) - n, []
        if batch:
            n = self._db.write(flush)
            added, skipped = added + n, skipped + len(batch) - n
        return added, skipped

    def _insert(
        self,
        conn: Connection,
        row: MeasurementRow,
        verdict: Verdict,
        data: dict[str, Any],
        *,
        ignore_existing: bool = True,
    ) -> int:
        """Insert one measurement; returns 1, or 0 when ``ignore_existing`` skipped it."""
        values = measurement_values(row, verdict, self._vantage_id(conn, row.vantage))
        if ignore_existing:
            if self._insert_new(conn, measurements, ["id"], values) is None:
                return 0
        else:
            conn.execute(insert(measurements).values(values))
        conn.execute(insert(observations).values(measurement_id=row.id, data=data))
        return 1

    def vantage_id(self, conn: Connection, vantage: Vantage) -> int:
        """The id of this vantage, created on first use (for sibling tables: traces)."""
        return self._vantage_id(conn, vantage)

    def _vantage_id(self, conn: Connection, vantage: Vantage) -> int:
        """The id of this exact vantage description, created on first use."""
        key = vantage_key(vantage)
        cached = self._vantage_ids.get(key)
        if cached is not None:
            return cached
        inserted = self._insert_new(conn, vantages, ["key"], vantage_row(vantage))
        if inserted is not None:  # not cached: this transaction may still roll back
            return int(inserted)
        found: int = conn.execute(select(v.id).where(v.key == key)).scalar_one()
        self._vantage_ids[key] = found
        return found

    def _insert_new(
        self, conn: Connection, table: Table, keys: list[str], values: dict[str, Any]
    ) -> Any:
        """Insert unless a row with the same ``keys`` exists; the new primary key or None."""
        dialect: Any = sqlite if self._db.is_sqlite else postgresql
        statement = (
            dialect.insert(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(*table.primary_key.columns)
        )
        return conn.execute(statement).scalar()

    # ----------------------------------------------------------------- reading

    def get(self, measurement_id: str) -> StoredMeasurement | None:
        """The measurement with this UUID or unique UUID prefix (>= 8 characters)."""
        wanted = measurement_id.strip().lower()
        if len(wanted) < MIN_ID_PREFIX or not set(wanted) <= _UUID_CHARS:
            raise UsageError(
                f"measurement id must be a UUID or its first {MIN_ID_PREFIX}+ characters, "
                f"not {measurement_id!r}"
            )
        condition = m.id == wanted if len(wanted) == 36 else m.id.like(wanted + "%")
        stmt = _full_select().where(condition).limit(2)
        with self._db.reading() as conn:
            found = conn.execute(stmt).all()
        if len(found) > 1:
            raise UsageError(f"measurement id prefix {wanted!r} is ambiguous; give more of it")
        return _stored(found[0]) if found else None

    def iter_rows(
        self, f: MeasurementFilter = ALL_MEASUREMENTS, *, oldest_first: bool = False
    ) -> Iterator[MeasurementRow]:
        """Matching rows, newest first, streamed in constant memory."""
        stmt = apply_filter(select(*ROW_COLUMNS).join(vantages), f, oldest_first)
        vantage_cache: dict[int, Vantage] = {}
        for r in self.stream(stmt):
            yield _row(r, vantage_cache)

    def iter_full(
        self, f: MeasurementFilter = ALL_MEASUREMENTS, *, oldest_first: bool = False
    ) -> Iterator[StoredMeasurement]:
        """Matching measurements with observations and verdict, newest first."""
        for r in self.stream(apply_filter(_full_select(), f, oldest_first)):
            yield _stored(r)

    def count(self, f: MeasurementFilter = ALL_MEASUREMENTS) -> int:
        stmt = apply_filter(select(func.count()).select_from(measurements).join(vantages), f, None)
        with self._db.reading() as conn:
            return int(conn.execute(stmt).scalar_one())

    def stream(self, stmt: Select[Any]) -> Iterator[Row[Any]]:
        """Rows of ``stmt`` fetched in batches (a server-side cursor on PostgreSQL)."""
        with self._db.reading() as conn:
            result = conn.execution_options(yield_per=STREAM_BATCH).execute(stmt)
            for batch in result.partitions():
                yield from batch

    def delete_before(self, cutoff: dt.datetime) -> int:
        """Delete measurements started before ``cutoff`` (retention), in one transaction."""

        def run(conn: Connection) -> int:
            old = select(m.id).where(m.started_at < cutoff)
            conn.execute(delete(observations).where(observations.c.measurement_id.in_(old)))
            return int(conn.execute(delete(measurements).where(m.started_at < cutoff)).rowcount)

        return self._db.write(run)

    def newest(self, f: MeasurementFilter) -> MeasurementFilter:
        """``f`` whose ``limit`` means what ``probe measurements --limit`` means: the
        newest ``limit`` measurements.  Exports write them oldest first, so the
        limit becomes a start bound at the N-th newest measurement (the streaming
        and split exports then need no limit); measurements that started in the
        same instant as the N-th are all included."""
        if f.limit is None:
            return f
        everything = dataclasses.replace(f, limit=None)
        stmt = apply_filter(select(m.started_at).join(vantages), everything, False)
        with self._db.reading() as conn:
            bound = conn.scalar(stmt.offset(f.limit - 1).limit(1))
        return everything if bound is None else dataclasses.replace(everything, since=bound)

    # ------------------------------------------------------------- reclassify

    def reclassify(
        self,
        classify: Callable[[DomainObservations], Verdict],
        f: MeasurementFilter = ALL_MEASUREMENTS,
    ) -> tuple[int, int]:
        """Classify stored observations again; returns (examined, changed).

        Every row whose stored verdict differs from the new one in any field
        (including reasons and classifier version) is rewritten; "changed"
        counts those whose outcome (status, methods, trigger, blockpage,
        https_ok) differs.  Observations are never modified.
        """
        examined = changed = 0
        after: tuple[dt.datetime, str] | None = None
        while f.limit is None or examined < f.limit:
            size = (
                RECLASSIFY_BATCH if f.limit is None else min(RECLASSIFY_BATCH, f.limit - examined)
            )
            stmt = apply_filter(_full_select(), dataclasses.replace(f, limit=size), True)
            if after is not None:
                stmt = stmt.where(
                    or_(m.started_at > after[0], and_(m.started_at == after[0], m.id > after[1]))
                )
            with self._db.reading() as conn:
                page = [_stored(r) for r in conn.execute(stmt)]
            if not page:
                break
            updates: list[tuple[str, Verdict]] = []
            for item in page:
                new = classify(item.observations)
                if new != item.verdict:
                    updates.append((item.row.id, new))
                    changed += _outcome(new) != _outcome(item.verdict)
            if updates:
                self._db.write(functools.partial(_write_verdicts, updates))
            examined += len(page)
            after = (page[-1].row.started_at, page[-1].row.id)
        return examined, changed

    # ---------------------------------------------------------------- timeline

    def add_events(self, events: Iterable[TimelineEvent]) -> int:
        """Store events not already present; returns how many were new."""
        rows = [
            _clean(
                {
                    "date": e.date,
                    "time": e.time,
                    "country": e.country,
                    "platform": e.platform,
                    "kind": e.kind,
                    "title": e.title,
                    "source": e.source,
                    "url": e.url,
                    "certainty": e.certainty,
                    "created_at": dt.datetime.now(dt.UTC),
                }
            )
            for e in events
        ]
        keys = ["date", "country", "platform", "kind", "title"]

        def run(conn: Connection) -> int:
            return sum(self._insert_new(conn, timeline_events, keys, r) is not None for r in rows)

        return self._db.write(run) if rows else 0

    def iter_events(
        self, country: str | None = None, platform: str | None = None
    ) -> Iterator[TimelineEvent]:
        """Events in date order (events without a time first on their day)."""
        t = timeline_events.c
        stmt = select(
            t.date, t.time, t.country, t.platform, t.kind, t.title, t.source, t.url, t.certainty
        ).order_by(t.date, t.time.is_not(None), t.time, t.id)
        if country is not None:
            stmt = stmt.where(t.country == country.upper())
        if platform is not None:
            stmt = stmt.where(t.platform == platform)
        for r in self.stream(stmt):
            yield TimelineEvent(
                date=r.date,
                time=r.time,
                country=r.country,
                platform=r.platform,
                kind=r.kind,
                title=r.title,
                source=r.source,
                url=r.url,
                certainty=r.certainty,
            )


def vantage_key(vantage: Vantage) -> str:
    """The ``vantages.key`` of one exact description (every field counts)."""
    fields = [vantage.name, vantage.country, vantage.asn, vantage.network, vantage.notes]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def vantage_row(vantage: Vantage) -> dict[str, Any]:
    """The ``vantages`` columns describing ``vantage`` (text cleaned for every backend)."""
    return _clean(
        {
            "key": vantage_key(vantage),
            "name": vantage.name,
            "country": vantage.country,
            "asn": vantage.asn,
            "network": vantage.network,
            "notes": vantage.notes,
        }
    )


def measurement_values(
    row: MeasurementRow,
    verdict: Verdict,
    vantage_id: int,
    stored_at: dt.datetime | None = None,
    *,
    clean: bool = True,
) -> dict[str, Any]:
    """The ``measurements`` columns of one measurement, cleaned for storage.

    ``clean=False`` for text that is clean already (storage.schema and
    storage.wire decode uploads so): a collector stores thousands a second.
    """
    values = {
        "id": row.id,
        "vantage_id": vantage_id,
        "domain": row.domain,
        "input": row.input,
        "platform": row.platform,
        "started_at": row.started_at,
        "duration_ms": row.duration_ms,
        "resolver": row.resolver,
        "probe_version": row.probe_version,
        "stored_at": stored_at or dt.datetime.now(dt.UTC),
        **_verdict_columns(verdict),
        "dns_answers": LIST_SEPARATOR.join(row.dns_answers),
        "control_answers": LIST_SEPARATOR.join(row.control_answers),
        "first_failure": row.first_failure,
        "tls_failures": LIST_SEPARATOR.join(row.tls_failures),
        "http_status": row.http_status,
        "http_failures": LIST_SEPARATOR.join(row.http_failures),
        "http_title": row.http_title,
        "tcp_ms": row.tcp_ms,
        "tls_ms": row.tls_ms,
        "http_ms": row.http_ms,
        "helper_saw_site": row.helper_saw_site,
    }
    return _clean(values) if clean else values


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: clean_text(x) if isinstance(x, str) else x for k, x in values.items()}


def _verdict_columns(verdict: Verdict) -> dict[str, Any]:
    return {
        "status": str(verdict.status),
        "blocking": LIST_SEPARATOR.join(str(x) for x in verdict.blocking),
        "trigger": str(verdict.trigger) if verdict.trigger else None,
        "reasons": [clean_text(r) for r in verdict.reasons],
        "notes": [clean_text(n) for n in verdict.notes],
        "blockpage": verdict.blockpage,
        "https_ok": verdict.https_ok,
        "classifier_version": verdict.classifier_version,
    }


def _outcome(verdict: Verdict) -> tuple[object, ...]:
    return (verdict.status, verdict.blocking, verdict.trigger, verdict.blockpage, verdict.https_ok)


def _write_verdicts(updates: Sequence[tuple[str, Verdict]], conn: Connection) -> None:
    for measurement_id, verdict in updates:
        conn.execute(
            update(measurements)
            .where(m.id == measurement_id)
            .values(_clean(_verdict_columns(verdict)))
        )


def _conditions(f: MeasurementFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if f.since is not None:
        conditions.append(m.started_at >= f.since)
    if f.until is not None:
        conditions.append(m.started_at < f.until)
    if f.domain is not None:
        conditions.append(m.domain == f.domain.lower().rstrip("."))
    if f.platform is not None:
        conditions.append(m.platform == f.platform)
    if f.vantage is not None:
        conditions.append(v.name == f.vantage)
    if f.country is not None:
        conditions.append(v.country == f.country.upper())
    if f.verdict is not None:
        conditions.append(m.status == f.verdict)
    return conditions


def apply_filter(stmt: Select[Any], f: MeasurementFilter, oldest_first: bool | None) -> Select[Any]:
    """``stmt`` restricted by ``f``; ordered by start time (ties by id) unless None."""
    stmt = stmt.where(*_conditions(f))
    if oldest_first is not None:
        order = (m.started_at, m.id) if oldest_first else (m.started_at.desc(), m.id.desc())
        stmt = stmt.order_by(*order)
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    return stmt


def _full_select(raw: bool = False) -> Select[Any]:
    """Every column of a measurement; ``raw``: its observations as the stored JSON text."""
    data = type_coerce(observations.c.data, Text).label("data") if raw else observations.c.data
    return (
        select(*ROW_COLUMNS, m.reasons, m.notes.label("verdict_notes"), m.https_ok, data)
        .join(vantages)
        .join(observations, observations.c.measurement_id == m.id)
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(LIST_SEPARATOR)) if text else ()


def _row(r: Row[Any], vantage_cache: dict[int, Vantage] | None = None) -> MeasurementRow:
    vantage = vantage_cache.get(r.vantage_id) if vantage_cache is not None else None
    if vantage is None:
        vantage = Vantage(r.vantage_name, r.country, r.asn, r.network, r.notes)
        if vantage_cache is not None:
            vantage_cache[r.vantage_id] = vantage
    return MeasurementRow(
        id=r.id,
        vantage=vantage,
        domain=r.domain,
        input=r.input,
        platform=r.platform,
        started_at=r.started_at,
        duration_ms=r.duration_ms,
        verdict=r.status,
        blocking=_split(r.blocking),
        trigger=r.trigger,
        resolver=r.resolver,
        probe_version=r.probe_version,
        classifier_version=r.classifier_version,
        blockpage=r.blockpage,
        dns_answers=_split(r.dns_answers),
        control_answers=_split(r.control_answers),
        first_failure=r.first_failure,
        tls_failures=_split(r.tls_failures),
        http_status=r.http_status,
        http_failures=_split(r.http_failures),
        http_title=r.http_title,
        tcp_ms=r.tcp_ms,
        tls_ms=r.tls_ms,
        http_ms=r.http_ms,
        helper_saw_site=r.helper_saw_site,
    )


def _stored(r: Row[Any]) -> StoredMeasurement:
    return StoredMeasurement(
        row=_row(r), observations=from_dict(DomainObservations, r.data), verdict=stored_verdict(r)
    )


def stored_verdict(r: Row[Any]) -> Verdict:
    """The verdict of a row of _full_select."""
    return Verdict(
        status=Status(r.status),
        blocking=tuple(Method(x) for x in _split(r.blocking)),
        trigger=Trigger(r.trigger) if r.trigger else None,
        reasons=tuple(r.reasons or ()),
        blockpage=r.blockpage,
        https_ok=r.https_ok,
        classifier_version=r.classifier_version,
        notes=tuple(r.verdict_notes or ()),
    )
