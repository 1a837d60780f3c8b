"""storage.outbox's upload lines: the record storage.jsonl encodes, on every backend,
also for documents an older release stored (which take the slow path)."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import Connection, update

from storage.jsonl import encode
from storage.models import observations
from storage.outbox import Outbox
from storage.store import Store
from tests.collectors import helpers as H
from tests.storage import factories as F


def _lines(store: Store) -> dict[str, Any]:
    outbox = Outbox(store.database, "https://collector.example/", F.VANTAGE.name)
    return {o.id: json.loads(o.line) for batch in outbox.batches(2) for o in batch}


def _older(document: dict[str, Any], *, time_form: bool) -> dict[str, Any]:
    """What an older release might have stored: an unknown key, a defaulted field
    left out, and (``time_form``) a start time in another RFC 3339 spelling."""
    older = {k: v for k, v in document.items() if k != "notes"} | {"retired": 1}
    if time_form:
        older["started_at"] = older["started_at"].replace("Z", "+00:00")
    return older


def test_upload_lines_are_the_jsonl_records(db_url: str) -> None:
    items = [
        H.measurement(F.VANTAGE, blocked=blocked, started_at=F.START) for blocked in (True, False)
    ]
    items += H.batch(3, F.VANTAGE)
    with Store.open(db_url) as store:
        store.import_measurements(items)
        expected = {item.row.id: encode(item) for item in store.iter_full()}
        assert _lines(store) == expected and len(expected) == 5
        for item, time_form in zip(items[:2], (False, True), strict=True):
            document = _older(json.loads(json.dumps(expected[item.row.id]["observations"])),
                              time_form=time_form)  # fmt: skip
            statement = (
                update(observations)
                .where(observations.c.measurement_id == item.row.id)
                .values(data=document)
            )
            store.database.write(functools.partial(Connection.execute, statement=statement))
        older = {item.row.id: encode(item) for item in store.iter_full()}  # from_dict, to_dict
        assert older != expected and older[items[0].row.id]["observations"]["notes"] == []
        assert _lines(store) == older


def test_forget_makes_only_this_vantages_confirmations_by_this_collector_the_backlog(
    db_url: str,
) -> None:
    with Store.open(db_url) as store:
        store.import_measurements(H.batch(4, H.PTCL) + H.batch(3, H.JAZZ))
        mine = Outbox(store.database, "https://c.example/", H.PTCL.name)
        theirs = Outbox(store.database, "https://c.example", H.JAZZ.name)
        elsewhere = Outbox(store.database, "https://other.example", H.PTCL.name)
        for outbox in (mine, theirs, elsewhere):
            outbox.confirm(o.id for batch in outbox.batches(10) for o in batch)
        assert (mine.backlog(), theirs.backlog(), elsewhere.backlog()) == (0, 0, 0)
        assert mine.forget() == 4
        assert (mine.backlog(), theirs.backlog(), elsewhere.backlog()) == (4, 0, 0)
        assert mine.forget() == 0 and len(list(store.iter_full())) == 7  # nothing else deleted
