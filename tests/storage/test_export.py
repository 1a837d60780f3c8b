"""CSV export: columns, order, escaping, formula neutralisation, extra columns."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection

from probe.verdict import CLASSIFIER_VERSION
from storage import MeasurementFilter, Store, Vantage
from storage.export import (
    CORE_COLUMNS,
    CsvColumn,
    CsvColumnGroup,
    CsvRecord,
    ExtraColumns,
    export_csv,
    extra_names,
    register_columns,
)
from storage.records import ALL_MEASUREMENTS, TimelineEvent
from storage.text import spreadsheet_safe
from storage.timeline import REPORTED_COLUMNS, ReportedIndex, reported_columns, reported_csv_columns
from tests.storage import factories as F

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


def _export(
    store: Store, f: MeasurementFilter = ALL_MEASUREMENTS, **kw: object
) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    count = export_csv(store, out, f, **kw)  # type: ignore[arg-type]
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert count == len(rows)
    return rows


def test_columns_values_and_chronological_order(store: Store) -> None:
    late = store.save(F.accessible(started_at=F.START + HOUR), F.ACCESSIBLE, F.VANTAGE)
    early = store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE)

    out = io.StringIO(newline="")
    export_csv(store, out, extra=[])
    header = next(csv.reader(io.StringIO(out.getvalue())))
    assert header == list(CORE_COLUMNS)
    assert header[:3] == ["id", "started_at", "vantage"]

    rows = _export(store, extra=[])
    assert [r["id"] for r in rows] == [early, late]
    blocked = rows[0]
    assert blocked == {
        "id": early,
        "started_at": "2024-02-17T17:05:00.123Z",
        "vantage": "lahore-ptcl",
        "country": "PK",
        "asn": "17557",
        "network": "PTCL",
        "domain": "x.com",
        "input": "https://x.com/",
        "platform": "x",
        "verdict": "blocked",
        "blocking": "dns.injection;tls.reset;http.blockpage",
        "trigger": "sni",
        "resolver": "udp://192.0.2.53:53",
        "duration_ms": "250.75",
        "dns_answers": "198.51.100.7",
        "control_answers": "203.0.113.10",
        "first_failure": "tls:connection_reset",
        "tls_failures": "connection_reset",
        "http_status": "200",
        "http_failures": "connection_reset",
        "http_title": "Site blocked",
        "blockpage": "pk-prohibited",
        "tcp_ms": "40.5",
        "tls_ms": "",
        "http_ms": "55.0",
        "probe_version": "0.1.0",
        "classifier_version": CLASSIFIER_VERSION,
        "helper_saw_site": "",
    }
    assert rows[1]["verdict"] == "accessible" and rows[1]["trigger"] == ""
    assert [r["id"] for r in _export(store, MeasurementFilter(verdict="blocked"), extra=[])] == [
        early
    ]


def test_hostile_text_stays_one_valid_cell(store: Store) -> None:
    title = 'a, "quoted"\r\nsecond line\x00 and \udcff bytes'
    store.save(F.blocked_sni(title=title), F.BLOCKED, F.VANTAGE)

    out = io.StringIO(newline="")
    export_csv(store, out, extra=[])
    text = out.getvalue()
    assert "\x00" not in text
    text.encode("utf-8")  # valid UTF-8 whatever the page sent
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 1
    assert rows[0]["http_title"] == 'a, "quoted"\r\nsecond line and \ufffd bytes'


@pytest.mark.parametrize(
    "start", ["=", "+", "-", "@", "\t", "\r", "\n", "|", "\uff1d", "\uff0b", "\uff0d", "\uff20"]
)
def test_formulas_are_neutralised_but_numbers_are_not(store: Store, start: str) -> None:
    payload = f'{start}HYPERLINK("http://198.51.100.9/","x")'
    vantage = Vantage(name=f"{start}cmd|' /C calc'!A0", country="PK", asn=-1, network="@net")
    obs = dataclasses.replace(F.blocked_sni(title=payload), duration_ms=-3.5)
    store.save(obs, F.BLOCKED, vantage)

    row = _export(store, extra=[])[0]
    assert row["http_title"] == "'" + payload
    assert row["vantage"] == "'" + vantage.name
    assert row["network"] == "'@net"
    assert row["asn"] == "-1"  # numbers are written as numbers
    assert row["duration_ms"] == "-3.5"


def test_extra_columns_from_a_provider(store: Store) -> None:
    store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE)
    calls: list[Store] = []

    def provider(s: Store) -> list[CsvColumn]:
        calls.append(s)

        def label(r: CsvRecord) -> object:
            return f"={r.country}/{r.platform}/{r.started_at:%Y-%m-%d}"

        return [
            CsvColumn("label", label),
            CsvColumn("when", lambda r: r.started_at),
            CsvColumn("flag", lambda r: r.verdict == "blocked"),
            CsvColumn("nothing", lambda r: None),
        ]

    register_columns(provider)
    register_columns(provider)  # idempotent
    try:
        rows = _export(store)
    finally:
        from storage import export

        export._providers.remove(provider)
    assert len(calls) == 1
    assert list(rows[0])[-4:] == ["label", "when", "flag", "nothing"]
    assert rows[0]["label"] == "'=PK/x/2024-02-17"
    assert rows[0]["when"] == "2024-02-17T17:05:00.123Z"
    assert rows[0]["flag"] == "true"
    assert rows[0]["nothing"] == ""


def test_progress_is_reported(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import export

    monkeypatch.setattr(export, "PROGRESS_EVERY", 2)
    for i in range(5):
        store.save(F.accessible(started_at=F.START + i * HOUR), F.ACCESSIBLE, F.VANTAGE)
    seen: list[int] = []
    assert len(_export(store, extra=[], progress=seen.append)) == 5
    assert seen == [2, 4]


# --------------------------------------------------------- SQLite fast path
#
# storage.export_sqlite formats most of each row inside SQLite; whatever it
# writes must be byte for byte what the generic (SQLAlchemy) path writes.

HOSTILE = (
    'a, "quoted"\r\nsecond line\x00 and \udcff bytes',
    '"',
    '""',
    "",
    ",",
    "\n",
    "trailing\r",
    "=SUM(A1:A9)",
    "+1",
    "-1",
    "@cmd",
    "\tTab",
    "\rCR",
    '"=quoted formula"',
    "sep\x1finside",
    "rs\x1einside",
    "ünïcödé ✓ 中文",
    "plain title",
)


def _both(
    store: Store, f: MeasurementFilter = ALL_MEASUREMENTS, extra: list[ExtraColumns] | None = None
) -> tuple[str, str]:
    from storage.export import export_generic

    generic, fast = io.StringIO(newline=""), io.StringIO(newline="")
    n_generic = export_generic(store, generic, f, extra or [])
    n_fast = export_csv(store, fast, f, extra=extra or [])
    assert n_generic == n_fast
    return generic.getvalue(), fast.getvalue()


def _odd_values(verdict: str, tcp_ms: float | None, asn: int | None) -> tuple[object, ...]:
    """Values of every kind a group may return, some equal but formatted differently."""
    one: object = 1 if asn == -1 else True  # 1 == True, yet "1" != "true"
    return (one, tcp_ms, asn, None, "=" + verdict, f'a,"{verdict}"\n', "x\x1fy" * (asn == -1))


ODD_GROUP = CsvColumnGroup(
    ("one", "tcp", "asn2", "none", "formula", "quoted", "sep"),
    ("verdict", "tcp_ms", "asn"),
    _odd_values,
)


def _extra(kind: str, store: Store) -> list[ExtraColumns]:
    """Extra columns that keep the SQLite fast path (groups) or leave it (a CsvColumn)."""
    if kind == "none":
        return []
    if kind == "odd":
        return [ODD_GROUP]
    if kind == "reported":
        return [*reported_csv_columns(store), ODD_GROUP]
    return [ODD_GROUP, CsvColumn("country", lambda r: r.country)]


@pytest.fixture
def fast_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the SQLite export falls back to the generic path as a whole."""
    from storage import export_sqlite

    def refuse(*args: object, **kw: object) -> int:
        raise AssertionError("generic path used")

    monkeypatch.setattr(export_sqlite, "export_generic", refuse)


def _raw_update(store: Store, sql: str, *params: object) -> None:
    def run(conn: Connection) -> None:
        conn.exec_driver_sql(sql, params)

    store.database.write(run)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/fast.db") as s:
        yield s


@pytest.mark.parametrize("kind", ["none", "odd", "reported", "mixed"])
@pytest.mark.parametrize("batch", [2000, 3])
def test_sqlite_fast_path_writes_the_generic_bytes(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, batch: int, kind: str
) -> None:
    from storage import export_sqlite

    monkeypatch.setattr(export_sqlite, "BATCH", batch)  # mixes plain and unusual batches
    store = sqlite_store
    for i, text in enumerate(HOSTILE):
        when = F.START + i * HOUR
        vantage = Vantage(name=f"v{i % 3}", country="PK", asn=17557, network="PTCL")
        store.save(F.blocked_sni(title=text, started_at=when), F.BLOCKED, vantage)
        store.save(F.accessible(started_at=when + dt.timedelta(seconds=1)), F.ACCESSIBLE, F.VANTAGE)
    # Free text in other columns, negative numbers, odd floats (SQLite keeps
    # -0.0 as 0, but a memo of float text must still not mix the two up).
    hostile_vantage = Vantage(name="-cmd", country=None, asn=-1, network='net, "x"\n')
    obs = dataclasses.replace(
        F.blocked_sni(title=None, started_at=F.START - HOUR),
        input="https://x.com/?a=1,b",
        duration_ms=-3.5,
    )
    hostile_id = store.save(obs, F.BLOCKED, hostile_vantage)
    for value, ident in ((0.0, "a"), (-0.0, "b"), (1e16, "c"), (1e-7, "d"), (0.1 + 0.2, "e")):
        row = store.save(
            F.accessible(started_at=F.START + dt.timedelta(days=1, seconds=ord(ident))),
            F.ACCESSIBLE,
            F.VANTAGE,
        )
        _raw_update(
            store, "UPDATE measurements SET tcp_ms = ?, tls_ms = ? WHERE id = ?", value, value, row
        )
    _raw_update(store, "UPDATE measurements SET blocking = ? WHERE id = ?", "a\x1fb", hostile_id)

    if kind != "mixed":
        from storage import export_sqlite

        monkeypatch.setattr(export_sqlite, "export_generic", None)  # must not be needed
    extra = _extra(kind, store)
    generic, fast = _both(store, extra=extra)
    assert generic == fast
    rows = list(csv.reader(io.StringIO(fast, newline="")))
    assert len(rows) == 2 * len(HOSTILE) + 7
    assert {len(row) for row in rows} == {len(CORE_COLUMNS) + len(extra_names(extra))}
    assert "'=SUM(A1:A9)" in fast and '"\'-cmd"' not in fast and "'-cmd" in fast
    assert ",0.0,0.0," in fast and ",1e+16,1e+16," in fast and ",1e-07,1e-07," in fast
    if kind != "none":
        by_asn = {r["asn"]: r for r in csv.DictReader(io.StringIO(fast, newline=""))}
        assert (by_asn["-1"]["one"], by_asn["-1"]["sep"]) == ("1", "x\x1fy")
        assert (by_asn["17557"]["one"], by_asn["17557"]["sep"]) == ("true", "")
        assert by_asn["-1"]["formula"] == "'=blocked"
        assert by_asn["-1"]["quoted"] == 'a,"blocked"\n' and by_asn["-1"]["none"] == ""
    for f in (
        MeasurementFilter(verdict="blocked"),
        MeasurementFilter(since=F.START, until=F.START + 5 * HOUR, limit=4),
        MeasurementFilter(vantage="v1", domain="x.com"),
    ):
        generic, fast = _both(store, f, extra)
        assert generic == fast and fast.count("\r\n") > 1


@pytest.mark.parametrize(
    "stored",
    [
        "2024-02-17 22:00:00.123+05",  # an offset: SQLAlchemy converts it to UTC
        "2024-02-17 17:05:00",  # no fraction
        "2024-02-17T17:05:00.987654",  # another separator
        "2024-W07-6 17:05:00.000000",  # an ISO week date, same length as ours
    ],
)
@pytest.mark.parametrize("kind", ["none", "reported"])
def test_sqlite_fast_path_defers_odd_stored_times(
    sqlite_store: Store, stored: str, kind: str
) -> None:
    store = sqlite_store
    for i in range(3):
        store.save(F.accessible(started_at=F.START + i * HOUR), F.ACCESSIBLE, F.VANTAGE)
    odd = store.save(F.blocked_sni(started_at=F.START + 9 * HOUR), F.BLOCKED, F.VANTAGE)
    _raw_update(store, "UPDATE measurements SET started_at = ? WHERE id = ?", stored, odd)
    generic, fast = _both(store, extra=_extra(kind, store))
    assert generic == fast
    assert odd in fast


def test_sqlite_fast_path_streams_in_batches(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are written batch by batch while the query runs, never all at once."""
    from storage import export_sqlite

    monkeypatch.setattr(export_sqlite, "BATCH", 2)
    for i in range(7):
        sqlite_store.save(F.accessible(started_at=F.START + i * HOUR), F.ACCESSIBLE, F.VANTAGE)
    writes: list[int] = []

    class Recorder(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s.count("\r\n"))
            return super().write(s)

    out = Recorder(newline="")
    assert export_csv(sqlite_store, out, extra=[]) == 7
    assert writes == [1, 2, 2, 2, 1]  # header, then one write per batch


def test_sqlite_extra_columns_use_the_generic_rows(sqlite_store: Store) -> None:
    from storage.export import export_generic

    sqlite_store.save(F.blocked_sni(title="=t, x"), F.BLOCKED, F.VANTAGE)
    extra = [CsvColumn("when", lambda r: r.started_at), CsvColumn("c", lambda r: r.country)]
    generic, fast = io.StringIO(newline=""), io.StringIO(newline="")
    export_generic(sqlite_store, generic, ALL_MEASUREMENTS, extra)
    export_csv(sqlite_store, fast, extra=extra)
    assert generic.getvalue() == fast.getvalue()
    assert fast.getvalue().splitlines()[1].endswith(",2024-02-17T17:05:00.123Z,PK")


def _event(
    when: str, kind: str, title: str, country: str = "IR", platform: str = "x"
) -> TimelineEvent:
    moment = dt.datetime.fromisoformat(when)
    time = moment.time() if len(when) > 10 else None
    return TimelineEvent(moment.date(), country, platform, kind, title, "test", time=time)


@pytest.mark.parametrize("batch", [2000, 2])
def test_sqlite_fast_path_reported_columns_at_the_edges(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, fast_only: None, batch: int
) -> None:
    """The timeline's columns (as `probe export csv` adds them) on the fast path:
    before the first event, exactly at event instants and window ends, a
    microsecond before, platforms and countries without events, no country."""
    from storage import export_sqlite

    monkeypatch.setattr(export_sqlite, "BATCH", batch)
    store = sqlite_store
    store.add_events(
        [
            _event("2024-03-01T12:00:00", "block", '=cmd, "quoted"'),
            _event("2024-03-12", "disruption", "one day"),
            _event("2024-03-05T06:00:00", "statement", "context, only", platform="*"),
            _event("2024-03-10T08:30:00.250000", "restore", "sep\x1finside"),
        ]
    )
    pk = F.VANTAGE
    ir = Vantage(name="tehran", country="IR", asn=58224, network="TCI")
    de = Vantage(name="berlin", country="DE", asn=3320, network="DTAG")
    nowhere = Vantage(name="unknown", country=None, asn=None, network=None)
    us = dt.timedelta(microseconds=1)
    pk_block = dt.datetime(2024, 2, 17, 17, 0, tzinfo=dt.UTC)  # built-in: 22:00 PKT
    cases = [
        (pk, "x", dt.datetime(2001, 1, 1, tzinfo=dt.UTC)),  # before any event
        (pk, "x", pk_block - us),
        (pk, "x", pk_block),
        (pk, "youtube", pk_block),  # only the platform-wide events apply
        (pk, None, pk_block),
        (de, "x", pk_block),
        (nowhere, "x", pk_block + us),
    ]
    for moment in (
        "2024-03-01T11:59:59.999999",
        "2024-03-01T12:00:00",
        "2024-03-05T06:00:00",
        "2024-03-10T08:30:00.249999",
        "2024-03-10T08:30:00.250000",
        "2024-03-12T00:00:00",
        "2024-03-12T23:59:59.999999",
        "2024-03-13T00:00:00",
    ):
        cases.append((ir, "x", dt.datetime.fromisoformat(moment).replace(tzinfo=dt.UTC)))
    saved = {
        store.save(F.accessible(started_at=when, platform=platform), F.ACCESSIBLE, vantage): (
            vantage.country,
            platform,
            when,
        )
        for vantage, platform, when in cases
    }

    extra: list[ExtraColumns] = list(reported_csv_columns(store))
    fast = io.StringIO(newline="")
    export_csv(store, fast, extra=extra)
    monkeypatch.undo()
    generic, again = _both(store, extra=extra)
    assert fast.getvalue() == generic == again

    index = ReportedIndex(store.iter_events())
    rows = list(csv.DictReader(io.StringIO(generic, newline="")))
    assert len(rows) == len(cases)
    for row in rows:
        expected = reported_columns(index.at(*saved[row["id"]]))
        assert [row[n] for n in REPORTED_COLUMNS] == [
            spreadsheet_safe(expected[n]) for n in REPORTED_COLUMNS
        ], saved[row["id"]]
    by_time = {(r["vantage"], r["platform"], r["started_at"]): r for r in rows}
    assert by_time["lahore-ptcl", "x", "2001-01-01T00:00:00.000Z"]["reported_status"] == "unknown"
    assert by_time["lahore-ptcl", "x", "2024-02-17T16:59:59.999Z"]["reported_status"] == "restored"
    assert by_time["lahore-ptcl", "x", "2024-02-17T17:00:00.000Z"]["reported_status"] == "blocked"
    tehran = {r["started_at"]: r for r in rows if r["vantage"] == "tehran"}
    assert tehran["2024-03-01T11:59:59.999Z"]["reported_status"] == "unknown"
    assert tehran["2024-03-01T12:00:00.000Z"]["last_event"] == 'block: =cmd, "quoted"'
    assert tehran["2024-03-05T06:00:00.000Z"]["last_event"] == "statement: context, only"
    assert tehran["2024-03-10T08:30:00.249Z"]["reported_status"] == "blocked"
    assert tehran["2024-03-10T08:30:00.250Z"]["last_event"] == "restore: sep\x1finside"
    assert tehran["2024-03-12T23:59:59.999Z"]["reported_status"] == "blocked"
    assert tehran["2024-03-13T00:00:00.000Z"]["reported_status"] == "restored"
    assert by_time["unknown", "x", "2024-02-17T17:00:00.000Z"]["reported_status"] == "unknown"


def test_a_step_function_group_needs_started_at_last() -> None:
    with pytest.raises(ValueError, match="started_at last"):
        CsvColumnGroup(("a",), ("started_at", "country"), lambda *v: ("x",), lambda c: [])
