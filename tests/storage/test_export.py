"""CSV export: columns, order, escaping, formula neutralisation, extra columns."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Iterator

import pytest

from storage import MeasurementFilter, Store, Vantage
from storage.export import CORE_COLUMNS, CsvColumn, CsvRecord, export_csv, register_columns
from storage.records import ALL_MEASUREMENTS
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
        "classifier_version": "1",
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


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
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
