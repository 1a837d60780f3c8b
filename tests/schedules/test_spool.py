"""schedules.spool: a measurement the database refuses is kept on disk and
stored when the database is back; nothing is lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import json
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.classify import classify
from probe.errors import StorageError
from schedules import jobs
from schedules.spool import Spool
from schedules.state import FAILED, OK
from storage.jsonl import read_jsonl
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


def test_concurrent_adds_and_drains_store_every_measurement_once(
    store: Store, tmp_path: Path
) -> None:
    """Appends from several threads while drains run in others: the race of
    issue #10 (an append between read and unlink was lost)."""
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    verdict = classify(obs)
    added: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def appender() -> None:
        for _ in range(60):
            added.append(spool.add(obs, verdict, VANTAGE))

    def drainer() -> None:
        while not stop.is_set():
            try:
                spool.drain(store)
            except BaseException as exc:  # any error is the bug
                errors.append(exc)

    drainers = [threading.Thread(target=drainer) for _ in range(2)]
    appenders = [threading.Thread(target=appender) for _ in range(4)]
    for thread in drainers + appenders:
        thread.start()
    for thread in appenders:
        thread.join()
    stop.set()
    for thread in drainers:
        thread.join()
    spool.drain(store)
    assert errors == []
    assert not spool.pending()
    stored = [r.id for r in store.iter_rows(MeasurementFilter())]
    assert len(added) == 240
    assert sorted(stored) == sorted(added)  # every one, once


def test_a_second_drain_does_not_wait_or_fail(store: Store, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    spool.add(obs, classify(obs), VANTAGE)
    with spool._drain:  # another thread is draining
        assert spool.drain(store) == 0
        assert spool.pending()
    assert spool.drain(store) == 1


def test_a_torn_last_line_does_not_swallow_the_next_measurement(
    store: Store, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    spool.path.write_text('{"schema": "probe.measurement/1", "id": "torn')  # no newline
    kept = spool.add(obs, classify(obs), VANTAGE)
    assert spool.drain(store) == 1
    assert store.get(kept) is not None
    assert spool.corrupt.read_text() == '{"schema": "probe.measurement/1", "id": "torn\n'


def test_a_drain_interrupted_by_a_crash_is_finished_once(store: Store, tmp_path: Path) -> None:
    """kill -9 after some batches were imported, before the unlink: the
    ``.draining`` file is imported again first; nothing is duplicated."""
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    ids = [spool.add(obs, classify(obs), VANTAGE) for _ in range(3)]
    spool.path.rename(spool.draining)
    store.import_measurements(read_jsonl(spool.draining.read_text().splitlines()[:2]))
    newer = spool.add(obs, classify(obs), VANTAGE)
    assert spool.drain(store) == 2
    assert sorted(r.id for r in store.iter_rows(MeasurementFilter())) == sorted([*ids, newer])
    assert not spool.draining.exists() and not spool.path.exists()


def test_a_refused_drain_keeps_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    spool.add(obs, classify(obs), VANTAGE)
    spool.add(obs, classify(obs), VANTAGE)
    spool.path.write_text(spool.path.read_text() + "not json\n")
    db = tmp_path / "probe.db"
    with Store.open(str(db)) as broken:
        broken.close()  # new connections find no database
        db.unlink()
        db.mkdir()  # the database is now unusable
        with pytest.raises(StorageError):
            spool.drain(broken)
    assert spool.pending() and not spool.corrupt.exists()  # not set aside twice on retry
    db.rmdir()
    with Store.open(str(db)) as repaired:
        assert spool.drain(repaired) == 2
    assert spool.corrupt.read_text() == "not json\n"


def test_replay_streams_in_bounded_batches(store: Store, tmp_path: Path) -> None:
    """A long outage's spool is imported batch by batch: the peak memory of the
    drain is a fraction of the spool's size (it was all of it, decoded)."""
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    spool.add(obs, classify(obs), VANTAGE)
    record = json.loads(spool.path.read_text())
    with open(spool.path, "w") as handle:  # as if added one by one (without 800 fsyncs)
        for _ in range(800):
            handle.write(json.dumps({**record, "id": str(uuid.uuid4())}) + "\n")
    size = spool.path.stat().st_size
    tracemalloc.start()
    try:
        assert spool.drain(store) == 800
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.count(MeasurementFilter()) == 800
    assert peak < size, (peak, size)  # never the whole spool at once


def test_a_spool_that_cannot_be_written_keeps_the_measurement_in_memory(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Disk full or unwritable: the measurement waits in memory and is stored
    at the next successful write; only a stop before that loses it (said loudly)."""
    (tmp_path / "full").write_text("")
    spool = Spool(tmp_path / "full" / "unsaved.jsonl")  # its folder cannot exist
    obs = working()
    with pytest.raises(OSError):
        spool.add(obs, classify(obs), VANTAGE)
    assert spool.in_memory == 1 and spool.pending()
    assert spool.drain(store) == 1
    assert spool.in_memory == 0 and not spool.pending()
    with pytest.raises(OSError):
        spool.add(obs, classify(obs), VANTAGE)
    spool.close()
    assert "1 measurements held in memory LOST" in caplog.text


def test_spool_files_are_private(store: Store, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "unsaved.jsonl")
    obs = working()
    spool.add(obs, classify(obs), VANTAGE)
    assert spool.path.stat().st_mode & 0o777 == 0o600


def test_two_overdue_targets_draining_at_once_lose_nothing(store: Store, tmp_path: Path) -> None:
    """The second form of the race: two checks finish together and both find
    the spool pending; each one's own measurement is stored, the spool once."""
    spool = Spool(tmp_path / "probe.db.daemon.json.unsaved.jsonl")
    obs = working()
    spooled = [spool.add(obs, classify(obs), VANTAGE) for _ in range(50)]

    async def main() -> None:
        async with DNSServer({**BEHAVIOURS, "slow.test": BEHAVIOURS["fast.test"]}) as dns:
            runner = _runner(store, tmp_path, dns)
            runner.spool = spool
            runner.semaphore = asyncio.Semaphore(2)
            await asyncio.gather(
                jobs.check_job(runner, "fast.test"), jobs.check_job(runner, "slow.test")
            )
            for domain in ("fast.test", "slow.test"):
                assert runner.state.target(domain).last_outcome == OK

    asyncio.run(main())
    rows = list(store.iter_rows(MeasurementFilter()))
    assert len(rows) == len({r.id for r in rows}) == 52
    assert set(spooled) <= {r.id for r in rows}
    assert not spool.pending()
