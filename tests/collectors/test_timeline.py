from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from collectors.timeline import (
    TimelineFileError,
    builtin_events,
    ensure_builtin_timeline,
    load_file,
    parse_csv,
    parse_yaml,
    to_csv,
)
from storage.store import Store

HEADER = "date,time,country,platform,kind,title,source,url,certainty\n"


def test_builtin_dataset_has_the_seed_events_with_sources() -> None:
    events = builtin_events()
    assert len(events) == 21
    assert all(e.source for e in events)
    block = next(e for e in events if e.date == dt.date(2024, 2, 17))
    assert block.kind == "block" and block.platform == "x"
    assert block.time == dt.time(17, 0)  # 22:00 PKT in UTC
    april = {(e.date, e.kind) for e in events if e.date.month == 4 and e.date.year == 2024}
    assert april == {
        (dt.date(2024, 4, 17), "statement"),  # Interior Ministry report to the IHC
        (dt.date(2024, 4, 17), "court"),  # Sindh High Court: withdraw within one week
        (dt.date(2024, 4, 18), "statement"),  # X's Global Government Affairs
    }
    assert any("seed" in e.source for e in events if e.date == dt.date(2024, 4, 18))


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = HEADER + (
        "2024-02-17,,PK,x,block,ok row,src,,high\n"
        "2024-13-01,,PK,x,block,bad date,src,,high\n"
        "2024-02-18,25:00,PK,x,block,bad time,src,,high\n"
        "2024-02-18,,Pakistan,x,block,bad country,src,,high\n"
        "2024-02-18,,PK,x,banned,bad kind,src,,high\n"
        "2024-02-18,,PK,x,block,,src,,high\n"
        "2024-02-18,,PK,x,block,bad url,src,javascript:alert(1),high\n"
        "2024-02-18,,PK,x,block,bad certainty,src,,sure\n"
        "2024-02-17,,PK,x,block,ok row,src,,high\n"
        "2024-02-18,,PK,x,block,too many,src,,high,extra\n"
    )
    with pytest.raises(TimelineFileError) as info:
        parse_csv(text, "t.csv")
    errors = {e.row: e.message for e in info.value.errors}
    assert set(errors) == {f"line {n}" for n in range(3, 12)}
    assert "bad date" in errors["line 3"]
    assert "bad time" in errors["line 4"]
    assert "country" in errors["line 5"]
    assert "unknown kind 'banned'" in errors["line 6"]
    assert "missing title" in errors["line 7"]
    assert "url" in errors["line 8"]
    assert "certainty" in errors["line 9"]
    assert "duplicate of line 2" in errors["line 10"]
    assert "more cells" in errors["line 11"]
    assert "nothing imported" in str(info.value)


def test_header_problems_are_reported() -> None:
    with pytest.raises(TimelineFileError) as info:
        parse_csv("date,country,kind,title,source,colour\n2024-01-01,PK,block,t,s,red\n")
    messages = [e.message for e in info.value.errors]
    assert "missing column 'platform'" in messages
    assert "unknown column 'colour'" in messages


def test_offsets_are_converted_to_utc_and_aliases_normalised() -> None:
    [event] = parse_csv(HEADER + "2024-02-18,02:30+05:00,pk,Twitter,Block,t,s,,\n")
    assert (event.date, event.time) == (dt.date(2024, 2, 17), dt.time(21, 30))
    assert (event.country, event.platform, event.kind, event.certainty) == (
        "PK",
        "x",
        "block",
        "medium",
    )


def test_yaml_events_and_errors() -> None:
    good = parse_yaml(
        "events:\n"
        "  - {date: 2024-02-17, time: '22:00+05:00', country: PK, platform: x,\n"
        "     kind: block, title: X suspended, source: AFP, url: 'https://example.org/a'}\n"
    )
    assert good[0].time == dt.time(17, 0) and good[0].url == "https://example.org/a"
    with pytest.raises(TimelineFileError) as info:
        parse_yaml(
            "- {date: 2024-02-17, time: 22:00, country: PK, platform: x, kind: block,"
            " title: t, source: s}\n"
            "- just text\n"
            "- {date: 2024-02-17, country: PK, platform: x, kind: block, title: t2, source: s,"
            " colour: red}\n"
        )
    errors = {e.row: e.message for e in info.value.errors}
    assert "quoted" in errors["event 1"]
    assert "not a mapping" in errors["event 2"]
    assert "unknown field" in errors["event 3"]


def test_csv_round_trip() -> None:
    events = builtin_events()
    assert parse_csv(to_csv(events)) == events


def test_bad_file_imports_nothing_and_good_file_is_idempotent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "2024-03-01,,PK,x,court,fine,src,,\n2024-03-02,,PK,x,nope,t,s,,\n")
    good = tmp_path / "good.yaml"
    good.write_text(
        "- {date: 2024-03-01, country: PK, platform: x, kind: court, title: t, source: s}\n"
    )
    with Store.open(str(tmp_path / "db.sqlite")) as store:
        assert ensure_builtin_timeline(store) == 21
        assert ensure_builtin_timeline(store) == 0
        with pytest.raises(TimelineFileError):
            store.add_events(load_file(bad))
        assert len(list(store.iter_events())) == 21
        assert store.add_events(load_file(good)) == 1
        assert store.add_events(load_file(good)) == 0
        assert len(list(store.iter_events(country="PK", platform="x"))) == 17


def test_unknown_extension_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("x")
    with pytest.raises(Exception, match=r"\.csv, \.yaml"):
        load_file(path)


def test_a_missing_file_is_named_once_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "gone.csv"
    with pytest.raises(Exception) as raised:
        load_file(path)
    assert str(raised.value) == f"cannot read timeline file {path}: No such file or directory"
