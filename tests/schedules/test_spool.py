"""schedules.spool: a measurement the database refuses is kept on disk and
stored when the database is back; nothing is lost, nothing duplicated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.classify import classify
from schedules import jobs
from schedules.spool import Spool
from schedules.state import FAILED, OK
from storage.records import MeasurementFilter, Vantage
from storage.store import Store
from tests.probe.builders import working
from tests.probe.checks.dnsserver import DNSServer
from tests.schedules.test_jobs import BEHAVIOURS, _runner

VANTAGE = Vantage("test-vantage", country="PK")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "probe.db")) as opened:
        yield opened


def test_add_then_drain_stores_the_same_measurement_once(store: Store, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    first = spool.add(obs, classify(obs), VANTAGE)
    second = spool.add(obs, classify(obs), VANTAGE)
    assert spool.pending()
    assert spool.drain(store) == 2
    assert not spool.pending() and not spool.path.exists()
    stored = store.get(first)
    assert stored is not None and stored.observations == obs
    assert stored.row.vantage.country == "PK"
    assert {r.id for r in store.iter_rows(MeasurementFilter())} == {first, second}


def test_a_torn_line_is_set_aside_not_lost(store: Store, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    kept = spool.add(obs, classify(obs), VANTAGE)
    with open(spool.path, "a") as handle:
        handle.write('{"schema": "probe.measurement/1", "id": "torn')  # power cut mid-write
    assert spool.drain(store) == 1
    assert store.get(kept) is not None
    corrupt = spool.path.with_name(spool.path.name + ".corrupt").read_text()
    assert corrupt == '{"schema": "probe.measurement/1", "id": "torn\n'


def test_job_spools_while_the_database_is_gone_and_stores_later(
    store: Store, tmp_path: Path
) -> None:
    db = tmp_path / "probe.db"

    async def main() -> None:
        async with DNSServer(BEHAVIOURS) as dns:
            runner = _runner(store, tmp_path, dns)
            runner.spool = Spool(tmp_path / "probe.db.daemon.json.unsaved.jsonl")
            store.close()
            db.unlink()
            db.mkdir()  # the database is now unusable
            await jobs.check_job(runner, "fast.test")
            assert runner.state.target("fast.test").last_outcome == FAILED
            assert runner.spool.pending()

            db.rmdir()  # the database is back
            with Store.open(str(db)) as repaired:
                runner.store = repaired
                await jobs.check_job(runner, "fast.test")
                assert runner.state.target("fast.test").last_outcome == OK
                assert not runner.spool.pending()
                rows = list(repaired.iter_rows(MeasurementFilter()))
                assert [r.domain for r in rows] == ["fast.test", "fast.test"]

    asyncio.run(main())
