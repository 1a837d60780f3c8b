"""Stored traces: each ``probe trace`` beside the measurements, re-locatable.

The whole :class:`~probe.trace.observations.TraceObservation` is kept as a
JSON document; the columns (interference, censor hop and address, evidence)
are what the decision made of it, re-written by :func:`relocate` when the
decision improves, as ``probe reclassify`` does for checks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from probe.observations import from_dict, to_dict
from probe.trace.observations import TraceObservation
from storage.models import TraceModel, traces, vantages
from storage.records import Vantage
from storage.store import Store
from storage.text import clean_text, clean_tree

t = TraceModel


@dataclass(frozen=True)
class TraceSummary:
    """What the decision made of a trace (the stored columns)."""

    interference: str | None
    censor_hop: int | None
    censor_address: str | None
    evidence: str


@dataclass(frozen=True)
class StoredTrace:
    id: str
    vantage: str
    measurement_id: str | None
    observation: TraceObservation
    summary: TraceSummary


def _columns(summary: TraceSummary) -> dict[str, Any]:
    return {
        "interference": summary.interference,
        "censor_hop": summary.censor_hop,
        "censor_address": summary.censor_address,
        "evidence": clean_text(summary.evidence),
    }


def save_trace(
    store: Store,
    obs: TraceObservation,
    summary: TraceSummary,
    vantage: Vantage,
    measurement_id: str | None = None,
) -> str:
    """Store one trace in one transaction and return its new UUID."""
    trace_id = str(uuid.uuid4())
    values = {
        "id": trace_id,
        "measurement_id": measurement_id,
        "domain": obs.domain,
        "started_at": obs.started_at,
        "duration_ms": obs.duration_ms,
        "stored_at": dt.datetime.now(dt.UTC),
        **_columns(summary),
        "data": clean_tree(to_dict(obs)),
    }
    store.database.write(
        lambda conn: conn.execute(
            traces.insert().values(vantage_id=store.vantage_id(conn, vantage), **values)
        )
    )
    return trace_id


def iter_traces(store: Store, domain: str | None = None) -> Iterator[StoredTrace]:
    """Stored traces, oldest first, streamed."""
    stmt = (
        select(t.id, vantages.c.name, t.measurement_id, t.data, t.interference, t.censor_hop,
               t.censor_address, t.evidence)
        .join(vantages, vantages.c.id == t.vantage_id)
        .order_by(t.started_at, t.id)
    )  # fmt: skip
    if domain is not None:
        stmt = stmt.where(t.domain == domain)
    for row in store.stream(stmt):
        yield StoredTrace(
            id=row.id,
            vantage=row.name,
            measurement_id=row.measurement_id,
            observation=from_dict(TraceObservation, row.data),
            summary=TraceSummary(
                row.interference, row.censor_hop, row.censor_address, row.evidence
            ),
        )


def last_trace_at(store: Store, domain: str) -> dt.datetime | None:
    """When ``domain`` was last traced (the daemon traces a target at most so often)."""
    with store.database.reading() as conn:
        value: dt.datetime | None = conn.execute(
            select(func.max(t.started_at)).where(t.domain == domain)
        ).scalar()
    return value


def relocate(store: Store, decide: Callable[[TraceObservation], TraceSummary]) -> tuple[int, int]:
    """Re-run ``decide`` over every stored trace; returns (traces read, summaries changed)."""
    changed: list[tuple[str, TraceSummary]] = []
    read = 0
    for item in iter_traces(store):
        read += 1
        summary = decide(item.observation)
        if summary != item.summary:
            changed.append((item.id, summary))

    def write(conn: Any) -> None:
        for trace_id, summary in changed:
            conn.execute(update(traces).where(t.id == trace_id).values(**_columns(summary)))

    if changed:
        store.database.write(write)
    return read, len(changed)
