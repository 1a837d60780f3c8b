"""schedules.jobs: a check job stores a real measurement; an interrupted one stores
nothing and says so; retention deletes only old measurements."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.check import CheckOptions
from probe.targets import Target
from schedules import jobs
from schedules.metrics import Metrics
from schedules.state import FAILED, INTERRUPTED, OK, StateFile, TargetState
from storage.records import MeasurementFilter, Vantage
from storage.store import Store
from tests.probe.checks.dnsserver import SILENT, DNSServer, answer

VANTAGE = Vantage("test-vantage", country="PK")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "probe.db")) as opened:
        yield opened


def _runner(store: Store, tmp_path: Path, dns: DNSServer, timeout: float = 2.0) -> jobs.Runner:
    options = CheckOptions(
        resolver=dns.spec,
        control_resolvers=(dns.spec,),
        control_domains=("control.test",),
        control_sni="control.test",
        timeout=timeout,
    )
    targets = {d: Target(d, d, "lab") for d in ("fast.test", "slow.test")}
    return jobs.Runner(
        store=store,
        vantage=VANTAGE,
        options=options,
        targets=targets,
        state=StateFile(tmp_path / "daemon.json"),
        metrics=Metrics(VANTAGE),
        concurrency=1,
    )


BEHAVIOURS = {"fast.test": answer("127.0.0.9"), "slow.test": SILENT}


def test_check_job_stores_and_records(store: Store, tmp_path: Path) -> None:
    async def main() -> None:
        async with DNSServer(BEHAVIOURS) as dns:
            runner = _runner(store, tmp_path, dns)
            await jobs.check_job(runner, "fast.test")
            assert runner.inflight == set()
            state = runner.state.target("fast.test")
            assert state.last_outcome == OK and state.runs == 1 and not state.unfinished
            rows = list(store.iter_rows(MeasurementFilter(domain="fast.test")))
            assert [r.id for r in rows] == [state.last_measurement]
            assert rows[0].vantage.name == "test-vantage" and rows[0].platform == "lab"
            assert runner.metrics is not None
            assert (
                runner.metrics.registry.get_sample_value(
                    "reachprobe_verdict_total", {"target": "fast.test", "status": rows[0].verdict}
                )
                == 1
            )

    asyncio.run(main())


def test_interrupted_check_stores_nothing_and_is_due_again(store: Store, tmp_path: Path) -> None:
    async def main() -> None:
        async with DNSServer(BEHAVIOURS) as dns:
            runner = _runner(store, tmp_path, dns, timeout=10)
            running = asyncio.create_task(jobs.check_job(runner, "slow.test"))
            queued = asyncio.create_task(jobs.check_job(runner, "fast.test"))  # concurrency 1
            await asyncio.sleep(0.3)
            assert len(runner.inflight) == 2
            before = dt.datetime.now(dt.UTC)
            running.cancel()
            queued.cancel()
            await asyncio.gather(running, queued)  # the job swallows the cancellation
            slow = runner.state.target("slow.test")
            assert slow.last_outcome == INTERRUPTED and slow.interrupted == 1
            assert slow.next_run is not None and slow.next_run >= before - dt.timedelta(seconds=1)
            fast = runner.state.target("fast.test")
            assert fast.last_outcome is None and fast.next_run is not None  # never started
            assert store.count() == 0
            assert runner.metrics is not None
            assert (
                runner.metrics.registry.get_sample_value(
                    "reachprobe_checks_interrupted_total", {"target": "slow.test"}
                )
                == 1
            )

    asyncio.run(main())


def test_one_check_at_a_time_with_concurrency_one(store: Store, tmp_path: Path) -> None:
    async def main() -> None:
        async with DNSServer({"fast.test": answer("127.0.0.9", delay=0.3)}) as dns:
            runner = _runner(store, tmp_path, dns)
            started: list[float] = []
            original = runner.state.update_target

            def spy(domain: str, **changes: Any) -> TargetState:
                if "last_started" in changes:
                    started.append(asyncio.get_running_loop().time())
                return original(domain, **changes)

            runner.state.update_target = spy  # type: ignore[method-assign]
            runner.targets["other.test"] = Target("other.test", "other.test")
            dns.set("other.test", answer("127.0.0.9", delay=0.3))
            await asyncio.gather(
                jobs.check_job(runner, "fast.test"), jobs.check_job(runner, "other.test")
            )
            assert len(started) == 2 and started[1] - started[0] >= 0.3
            assert store.count() == 2

    asyncio.run(main())


def test_storage_failure_is_recorded_not_raised(store: Store, tmp_path: Path) -> None:
    async def main() -> None:
        async with DNSServer(BEHAVIOURS) as dns:
            runner = _runner(store, tmp_path, dns)
            store.close()
            (tmp_path / "probe.db").unlink()
            (tmp_path / "probe.db").mkdir()  # now unusable as a database
            await jobs.check_job(runner, "fast.test")
            state = runner.state.target("fast.test")
            assert state.last_outcome == FAILED and state.failed == 1
            assert state.last_error

    asyncio.run(main())


def test_retention_deletes_only_old_measurements(store: Store, tmp_path: Path) -> None:
    async def main() -> None:
        async with DNSServer(BEHAVIOURS) as dns:
            runner = _runner(store, tmp_path, dns)
            await jobs.check_job(runner, "fast.test")

    asyncio.run(main())
    recent = next(iter(store.iter_full()))
    old = dataclasses.replace(
        recent.observations,
        started_at=recent.observations.started_at - dt.timedelta(days=40),
    )
    store.save(old, recent.verdict, VANTAGE)
    assert store.count() == 2
    assert jobs.retention_job(store, 0) == 0
    assert jobs.retention_job(store, 30) == 1
    remaining = list(store.iter_rows())
    assert [r.id for r in remaining] == [recent.row.id]
    assert store.get(recent.row.id) is not None
    with store.database.reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM observations").scalar_one() == 1
