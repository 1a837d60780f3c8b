"""JSONL: the lossless export, imported again."""

from __future__ import annotations

import io
import json

import pytest

from probe.errors import UsageError
from storage import Store, Vantage
from storage.jsonl import SCHEMA, read_jsonl, write_jsonl
from tests.storage import factories as F


def test_export_import_round_trip_is_lossless_and_idempotent(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    abroad = Vantage(name="control-de", country="DE")
    with Store.open(db_url) as source:
        ids = [
            source.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE),
            source.save(F.accessible(), F.ACCESSIBLE, abroad),
        ]
        out = io.StringIO()
        assert write_jsonl(source.iter_full(oldest_first=True), out) == 2
        originals = {s.row.id: s for s in source.iter_full()}

    lines = out.getvalue().splitlines()
    assert [json.loads(line)["schema"] for line in lines] == [SCHEMA, SCHEMA]
    assert {json.loads(line)["id"] for line in lines} == set(ids)

    target_url = f"sqlite:///{tmp_path / 'copy.db'}"
    with Store.open(target_url) as target:
        assert target.import_measurements(read_jsonl(lines)) == (2, 0)
        assert target.import_measurements(read_jsonl(lines)) == (0, 2)
        copies = {s.row.id: s for s in target.iter_full()}
    assert copies == originals


def test_bad_lines_name_their_line_number() -> None:
    good = {"schema": SCHEMA, "id": "not-a-uuid"}
    with pytest.raises(UsageError, match=r"in.jsonl:2: .*badly formed"):
        list(read_jsonl(["", json.dumps(good)], "in.jsonl"))
    with pytest.raises(UsageError, match=r"<input>:1: not a measurement record"):
        list(read_jsonl(['{"schema": "other/1"}']))
    with pytest.raises(UsageError, match=r"<input>:1: invalid JSON \(Expecting property name"):
        list(read_jsonl(["{not json"]))
    record = {
        "schema": SCHEMA,
        "id": "00000000-0000-4000-8000-000000000001",
        "vantage": {"name": "v"},
        "verdict": {"status": "censored"},
        "observations": {},
    }
    with pytest.raises(UsageError, match="<input>:1: 'censored' is not a valid Status"):
        list(read_jsonl([json.dumps(record)]))
    record["verdict"] = {"status": "blocked"}
    with pytest.raises(UsageError, match=r"<input>:1: malformed record .*'domain'"):
        list(read_jsonl([json.dumps(record)]))


@pytest.mark.parametrize("name", ["a\nb", "evil\x1b[2J", "", " ", "x" * 101])
def test_a_vantage_name_config_would_refuse_is_refused(name: str) -> None:
    """Such a name would split the rows of `probe report`, CSV and logs: a file that
    holds one is refused (naming its line) as a config or --vantage would be."""
    exported = io.StringIO()
    with Store.open("sqlite://") as store:
        store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE)
        write_jsonl(store.iter_full(), exported)
    record = json.loads(exported.getvalue())
    assert len(list(read_jsonl([json.dumps(record)]))) == 1
    record["vantage"]["name"] = name
    with pytest.raises(UsageError, match=r"<input>:1: vantage name .*: (holds a|must not|longer)"):
        list(read_jsonl([json.dumps(record)]))
