from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from pathlib import Path

import pytest

from collectors.timeline import builtin_events
from probe.observations import CheckSettings, DomainObservations
from probe.verdict import Method, Status, Verdict
from storage.records import StoredMeasurement, TimelineEvent, Vantage
from storage.store import Store
from storage.summary import measurement_row
from storage.timeline import (
    REPORTED_COLUMNS,
    ReportedCells,
    ReportedIndex,
    ReportedStatus,
    ReportedTimeline,
    register_csv_columns,
    reported_columns,
    reported_csv_columns,
)

UTC = dt.UTC


def ev(
    day: str, kind: str, title: str = "", platform: str = "x", time: dt.time | None = None
) -> TimelineEvent:
    return TimelineEvent(
        date=dt.date.fromisoformat(day),
        country="PK",
        platform=platform,
        kind=kind,
        title=title or kind,
        source="test",
        time=time,
    )


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_status_semantics() -> None:
    events = [
        ev("2024-01-10", "statement", "before anything"),
        ev("2024-02-01", "block", time=dt.time(17, 0)),
        ev("2024-02-02", "partial"),
        ev("2024-02-03", "court"),
        ev("2024-02-03", "shutdown", "mobile data everywhere", platform="*", time=dt.time(12, 0)),
        ev("2024-03-01", "restore"),
        ev("2024-03-10", "disruption"),
        ev("2024-04-01", "shutdown", "X shut down"),
        ev("2024-04-05", "restore"),
    ]
    tl = ReportedTimeline(reversed(events), "PK", "x")
    cases = {
        "2024-01-01T00:00": (ReportedStatus.UNKNOWN, None),
        "2024-01-11T00:00": (ReportedStatus.UNKNOWN, "before anything"),  # statements do not count
        "2024-02-01T16:59": (ReportedStatus.UNKNOWN, "before anything"),
        "2024-02-01T17:00": (ReportedStatus.BLOCKED, "block"),
        "2024-02-02T12:00": (ReportedStatus.BLOCKED, "partial"),
        "2024-02-04T00:00": (ReportedStatus.BLOCKED, "mobile data everywhere"),  # context only
        "2024-03-01T00:00": (ReportedStatus.RESTORED, "restore"),
        "2024-03-10T23:59": (ReportedStatus.BLOCKED, "disruption"),  # transient: that day only
        "2024-03-11T00:00": (ReportedStatus.RESTORED, "disruption"),
        "2024-04-02T00:00": (ReportedStatus.BLOCKED, "X shut down"),
        "2024-04-06T00:00": (ReportedStatus.RESTORED, "restore"),
    }
    for when, (status, title) in cases.items():
        got = tl.at(at(when))
        assert got.status == status, when
        assert (got.last_event.title if got.last_event else None) == title, when
    assert [s for _, s in tl.transitions()] == [
        ReportedStatus.BLOCKED,
        ReportedStatus.RESTORED,
        ReportedStatus.BLOCKED,
        ReportedStatus.RESTORED,
    ]


def test_platform_wide_events_never_change_status_and_countries_are_separate() -> None:
    index = ReportedIndex(
        [ev("2024-02-08", "shutdown", platform="*"), ev("2024-02-17", "block", platform="youtube")]
    )
    assert index.at("PK", "x", at("2024-02-20T00:00")).status == ReportedStatus.UNKNOWN
    assert index.at("PK", "youtube", at("2024-02-20T00:00")).status == ReportedStatus.BLOCKED
    assert index.at("IR", "youtube", at("2024-02-20T00:00")).status == ReportedStatus.UNKNOWN
    assert index.at(None, "x", at("2024-02-20T00:00")).status == ReportedStatus.UNKNOWN


def test_builtin_timeline_join() -> None:
    index = ReportedIndex(builtin_events())
    expect = {
        "2023-05-10T00:00": ReportedStatus.BLOCKED,
        "2024-01-19T12:00": ReportedStatus.RESTORED,  # since 2023-05-12
        "2024-01-20T12:00": ReportedStatus.BLOCKED,  # the rally disruption
        "2024-02-08T12:00": ReportedStatus.RESTORED,  # mobile shutdown is not an X block
        "2024-02-17T16:59": ReportedStatus.RESTORED,
        "2024-02-17T17:00": ReportedStatus.BLOCKED,  # 22:00 PKT
        "2024-04-20T00:00": ReportedStatus.BLOCKED,
        "2025-05-07T00:00": ReportedStatus.RESTORED,
    }
    for when, status in expect.items():
        assert index.at("PK", "x", at(when)).status == status, when
    last = index.at("PK", "x", at("2024-04-18T12:00")).last_event
    assert last is not None and last.kind == "statement" and "X's Global" in last.title


def _stored(ident: str, when: dt.datetime, status: Status) -> StoredMeasurement:
    obs = DomainObservations(
        domain="x.com",
        input="x.com",
        platform="x",
        started_at=when,
        duration_ms=10.0,
        settings=CheckSettings("system", (), "example.org", (), 5.0),
        dns=(),
        endpoints=(),
    )
    blocking = (Method.TLS_RESET,) if status is Status.BLOCKED else ()
    verdict = Verdict(status, blocking=blocking)
    vantage = Vantage("pk-1", "PK", 17557, "PTCL")
    return StoredMeasurement(measurement_row(ident, vantage, obs, verdict), obs, verdict)


def test_registration_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import export

    monkeypatch.setattr(export, "_providers", [])  # keep other tests' exports unchanged
    register_csv_columns()
    register_csv_columns()
    assert export._providers == [reported_csv_columns]


def test_csv_export_gains_reported_columns(tmp_path: Path) -> None:
    from storage.export import export_csv

    with Store.open(str(tmp_path / "db.sqlite")) as store:
        store.import_measurements(
            [
                _stored(
                    "00000000-0000-4000-8000-000000000001",
                    at("2024-02-10T00:00"),
                    Status.ACCESSIBLE,
                ),
                _stored(
                    "00000000-0000-4000-8000-000000000002", at("2024-02-17T20:00"), Status.BLOCKED
                ),
            ]
        )
        out = io.StringIO()
        export_csv(store, out, extra=reported_csv_columns(store))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0])[-3:] == list(REPORTED_COLUMNS)
    assert [r["reported_status"] for r in rows] == ["restored", "blocked"]
    assert rows[0]["last_event_date"] == "2024-02-08"  # the election-day mobile shutdown
    assert rows[1]["last_event_date"] == "2024-02-17"
    assert rows[1]["last_event"].startswith("block: X suspended")


def test_reported_cells_match_the_index_at_every_change() -> None:
    """The export's step function gives what ReportedIndex says, at each instant
    where the answer may change, a microsecond either side, and far outside."""
    events = [
        *builtin_events(),
        ev("2024-03-01", "block", "IR block", time=dt.time(12, 0)),
        ev("2024-03-05", "disruption", "IR day"),
        ev("2024-03-05", "statement", "IR context", platform="*", time=dt.time(6, 0)),
        ev("2024-03-10", "restore", "IR restore", time=dt.time(8, 30, 0, 250000)),
    ]
    events[-4:] = [dataclasses.replace(e, country="IR") for e in events[-4:]]
    index = ReportedIndex(events)
    cells = ReportedCells(index)
    us = dt.timedelta(microseconds=1)
    keys = [("PK", "x"), ("PK", "youtube"), ("IR", "x"), ("DE", "x"), (None, "x"), ("PK", None)]
    checked = 0
    for country, platform in keys:
        changes = index.timeline(country, platform).changes() if country and platform else ()
        assert list(changes) == sorted(set(changes))
        far = (at("1990-01-01T00:00"), at("2099-01-01T00:00"))
        for moment in (*far, *changes, *(c - us for c in changes), *(c + us for c in changes)):
            expected = reported_columns(index.at(country, platform, moment))
            assert cells(country, platform, moment) == tuple(
                expected[n] for n in REPORTED_COLUMNS
            ), (country, platform, moment)
            checked += 1
    assert checked > 100
    pk = index.timeline("PK", "x")
    assert at("2024-02-17T17:00") in pk.changes()  # the block, 22:00 PKT
    assert at("2024-01-21T00:00") in pk.changes()  # end of the 2024-01-20 disruption
    # Recurring answers are the same objects (the SQLite export memoises their text).
    assert cells("PK", "x", at("2024-03-01T00:00")) is cells("PK", "x", at("2024-03-02T00:00"))


def test_reported_provider_is_a_column_group(tmp_path: Path) -> None:
    """The CLI's provider declares its fields, so SQLite keeps the fast path."""
    from storage.export import CsvColumnGroup

    with Store.open(str(tmp_path / "db.sqlite")) as store:
        (group,) = reported_csv_columns(store)
    assert isinstance(group, CsvColumnGroup)
    assert group.names == REPORTED_COLUMNS
    assert group.fields == ("country", "platform", "started_at")
