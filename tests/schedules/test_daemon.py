"""schedules.daemon: scheduling policy (units) and the real `probe run` process
(SIGTERM, kill -9, restart, metrics, footprint), all on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from probe.config import load_config
from schedules.daemon import JOB_DEFAULTS, health_problem, make_trigger, resume_time
from schedules.state import TargetState
from tests.collectors.collectorproc import probe
from tests.probe.checks.dnsserver import SILENT, DNSServer, answer, serve_in_thread
from tests.schedules.daemonproc import DaemonProcess, integrity, measurements, write_config
from tests.schedules.test_metrics import descriptors, hold_idle_connections

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


# ------------------------------------------------------------------ policy


def test_jitter_keeps_runs_between_interval_and_interval_plus_jitter() -> None:
    trigger = make_trigger(60, 10)
    previous = NOW
    gaps = []
    for _ in range(500):
        following = trigger.get_next_fire_time(previous, previous)
        gaps.append((following - previous).total_seconds())
        previous = following
    assert min(gaps) >= 60 and max(gaps) <= 70
    assert max(gaps) - min(gaps) > 5  # the jitter is really applied
    no_jitter = make_trigger(60, 0)
    assert no_jitter.get_next_fire_time(NOW, NOW) == NOW + MIN


def test_resume_time() -> None:
    rng = random.Random(1)
    fresh = resume_time(TargetState(), NOW, 900, 60, rng)
    assert NOW <= fresh <= NOW + MIN
    overdue = TargetState(next_run=NOW - 50 * MIN)
    assert resume_time(overdue, NOW, 900, 60, rng) == NOW  # once, at once
    due_later = TargetState(next_run=NOW + 5 * MIN)
    assert resume_time(due_later, NOW, 900, 60, rng) == NOW + 5 * MIN
    too_far = TargetState(next_run=NOW + 600 * MIN)  # the interval was shortened since
    assert NOW <= resume_time(too_far, NOW, 900, 60, rng) <= NOW + MIN
    crashed = TargetState(last_started=NOW - MIN, next_run=NOW + 10 * MIN)
    assert resume_time(crashed, NOW, 900, 60, rng) == NOW


def test_one_run_per_target_at_a_time_and_missed_runs_coalesce() -> None:
    """The daemon's APScheduler job policy on a real AsyncIOScheduler."""

    async def main() -> tuple[int, list[float], int]:
        running = 0
        most = 0
        slow_starts: list[float] = []
        catch_up = 0

        async def slow() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            slow_starts.append(time.monotonic())
            await asyncio.sleep(0.5)  # longer than the 0.1 s interval
            running -= 1

        async def overdue() -> None:
            nonlocal catch_up
            catch_up += 1

        scheduler = AsyncIOScheduler(timezone=dt.UTC, job_defaults=JOB_DEFAULTS)
        now = dt.datetime.now(dt.UTC)
        scheduler.add_job(slow, make_trigger(0.1, 0), id="slow", next_run_time=now)
        # Last due an hour ago with a 1 s interval: 3600 missed runs -> one run.
        scheduler.add_job(
            overdue, make_trigger(1, 0), id="late", next_run_time=now - dt.timedelta(hours=1)
        )
        scheduler.start()
        await asyncio.sleep(1.3)
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
        return most, slow_starts, catch_up

    most, starts, catch_up = asyncio.run(main())
    assert most == 1
    assert len(starts) >= 2
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(starts))
    assert catch_up == 2  # the coalesced catch-up, then the next regular run


# ----------------------------------------------------------------- process


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    with serve_in_thread({"fast.test": answer("127.0.0.9"), "slow.test": SILENT}) as server:
        yield server


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _state(db: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(db.with_name(db.name + ".daemon.json").read_text())  # type: ignore[no-any-return]


def test_sigterm_interrupts_cleanly_and_restart_resumes(tmp_path: Path, dns: DNSServer) -> None:
    db = tmp_path / "probe.db"
    config = write_config(
        tmp_path / "c.toml",
        resolver=dns.spec,
        domains=["fast.test", "slow.test"],
        db=db,
        interval="1.5s",
        timeout="8s",
        grace="0.5s",
    )
    with DaemonProcess(config) as daemon:
        port = daemon.metrics_port()
        daemon.wait_for(r"fast\.test: offline .*measurement", count=2)
        page = _scrape(port)
        assert 'reachprobe_verdict_total{status="offline",target="fast.test"}' in page
        assert 'probe_success{target="fast.test"} 0.0' in page
        assert 'reachprobe_next_run_timestamp_seconds{target="slow.test"}' in page
        # The vantage is in PK: the built-in PK timeline is there for Grafana's annotations.
        assert 'reachprobe_timeline_event_timestamp_seconds{certainty="high",country="PK"' in page
        assert "NaN" not in page
        # The daemon never loads the plotting stack (it is a default dependency now).
        maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
        assert "matplotlib" not in maps and "numpy" not in maps
        # slow.test waits ~3 s for DNS that never answers: it is in flight now.
        assert daemon.terminate() == 0
        log = daemon.log
    assert "received SIGTERM" in log and log.rstrip().endswith("schedules.daemon: stopped")
    assert "slow.test: check started" in log and "interrupted by shutdown" in log
    assert "Traceback" not in log
    assert integrity(db) == "ok"
    stored = measurements(db)
    assert {d for d, _, _ in stored} == {"fast.test"}
    state = _state(db)
    assert state["pid"] is None and state["stopped_at"]
    assert state["targets"]["slow.test"]["last_outcome"] == "interrupted"
    fast_next = state["targets"]["fast.test"]["next_run"]
    assert fast_next > state["targets"]["fast.test"]["last_started"]

    # Restart: the interrupted target runs again at once; the schedule resumes.
    with DaemonProcess(config) as daemon:
        daemon.wait_for(r"slow\.test: offline .*measurement", timeout=15)
        assert daemon.terminate() == 0
    assert integrity(db) == "ok"
    assert any(d == "slow.test" for d, _, _ in measurements(db))
    assert len(measurements(db)) > len(stored)


def test_kill_9_mid_run_leaves_the_database_intact(tmp_path: Path, dns: DNSServer) -> None:
    db = tmp_path / "probe.db"
    config = write_config(
        tmp_path / "c.toml",
        resolver=dns.spec,
        domains=["fast.test", "slow.test"],
        db=db,
        interval="1s",
        jitter="0s",
        timeout="8s",
        metrics=False,
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for(r"fast\.test: offline .*measurement", count=3)
        daemon.kill()  # SIGKILL
        killed = daemon.proc.pid
    assert integrity(db) == "ok"
    before = len(measurements(db))
    assert before >= 3
    state = _state(db)
    assert state["pid"] is not None and state["stopped_at"] is None  # it never stopped
    assert state["targets"]["slow.test"]["last_finished"] is None  # killed mid-check
    # probe status says so plainly, and which check it cut short.
    said = probe("status", "--config", str(config))
    line = said.stdout.splitlines()[0]
    assert line.startswith(
        f"daemon: not running: it stopped uncleanly (pid {killed} ended without recording a "
        "stop: killed, crashed or a power cut); it had started 20"
    ), said.stdout + said.stderr
    assert "; check(s) cut short, re-run at the next start: slow.test; state " in line
    assert re.search(r"\nslow\.test .* cut short ", said.stdout), said.stdout
    report = json.loads(probe("status", "--config", str(config), "--json").stdout)["daemon"]
    assert report["running"] is False and report["cut_short"] == ["slow.test"]
    assert report["stopped_uncleanly"].startswith(f"it stopped uncleanly (pid {killed} ")
    unhealthy = str(health_problem(load_config(config, env={})))
    assert unhealthy.startswith("the daemon is not running: it stopped uncleanly")

    with DaemonProcess(config) as daemon:
        daemon.wait_for(r"slow\.test: the check started .* never finished")
        daemon.wait_for(r"fast\.test: offline .*measurement")
        assert daemon.terminate() == 0
    assert integrity(db) == "ok"
    assert len(measurements(db)) > before
    assert _state(db)["targets"]["slow.test"]["interrupted"] >= 1
    line = probe("status", "--config", str(config)).stdout.splitlines()[0]
    assert line.startswith("daemon: not running, stopped 20") and "uncleanly" not in line


def test_health_and_one_daemon_per_state(tmp_path: Path, dns: DNSServer) -> None:
    db = tmp_path / "probe.db"
    config = write_config(
        tmp_path / "c.toml",
        resolver=dns.spec,
        domains=["fast.test"],
        db=db,
        metrics=False,
        interval="1h",
        jitter="0s",
    )
    assert health_problem(load_config(config, env={})) == "the daemon is not running"
    with DaemonProcess(config) as first:
        first.wait_for(r"fast\.test: offline .*measurement")
        assert health_problem(load_config(config, env={})) is None
        late = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        assert "fast.test overdue" in str(health_problem(load_config(config, env={}), late))
        with DaemonProcess(config) as second:
            assert second.proc.wait(20) == 2
            second._reader.join(2)
            assert "another `probe run` already uses" in second.log
        assert first.terminate() == 0


def test_the_daemon_fits_its_concurrency_to_the_descriptor_limit(
    tmp_path: Path, dns: DNSServer
) -> None:
    """Under ``ulimit -n 256`` a daemon asked for 64 checks at once lowers that (says so
    once) and measures; a limit too small for one check is refused at start, in one line."""
    db = tmp_path / "probe.db"
    config = write_config(
        tmp_path / "c.toml", resolver=dns.spec, domains=["fast.test"], db=db, metrics=False
    )
    config.write_text(config.read_text().replace("[checks]\n", "[checks]\nconcurrency = 64\n"))
    with DaemonProcess(config, prefix=("prlimit", "--nofile=256:256", "--")) as daemon:
        daemon.wait_for(r"concurrency 64 lowered to \d+: 256 file descriptors allowed")
        daemon.wait_for(r"fast\.test: offline .*measurement", count=2)
        assert daemon.terminate() == 0
    assert daemon.log.count("file descriptors allowed") == 1, daemon.log
    with DaemonProcess(config, prefix=("prlimit", "--nofile=40:40", "--")) as refused:
        assert refused.proc.wait(20) == 2
        refused._reader.join(2)
    assert len(refused.lines) == 1, refused.log
    assert "only 40 file descriptors allowed (ulimit -n)" in refused.log


def test_a_state_that_cannot_be_written_skips_no_run(tmp_path: Path, dns: DNSServer) -> None:
    """The state is written around every check; when it cannot be (here its path is
    a folder; a full disk in the lab) the daemon says so once and keeps measuring."""
    db = tmp_path / "probe.db"
    config = write_config(
        tmp_path / "c.toml", resolver=dns.spec, domains=["fast.test"], db=db, metrics=False,
        interval="1s", jitter="0s",
    )  # fmt: skip
    db.with_name(db.name + ".daemon.json").mkdir()
    with DaemonProcess(config) as daemon:
        daemon.wait_for(r"fast\.test: offline .*measurement", count=3)
        assert daemon.terminate() == 0
    assert daemon.log.count("cannot write the daemon state") == 1, daemon.log
    assert "Traceback" not in daemon.log
    assert len(measurements(db)) >= 3


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_idle_metrics_connections_stop_neither_scrapes_nor_measuring(
    tmp_path: Path, dns: DNSServer
) -> None:
    db = tmp_path / "probe.db"
    config = write_config(
        tmp_path / "c.toml", resolver=dns.spec, domains=["fast.test"], db=db, interval="1s"
    )
    with DaemonProcess(config) as daemon, descriptors(1100):
        port = daemon.metrics_port()
        daemon.wait_for(r"fast\.test: offline .*measurement")
        threads = _threads(daemon.proc.pid)
        held = hold_idle_connections(port, 1000)
        try:
            saved = len(measurements(db))
            daemon.wait_for(r"fast\.test: offline .*measurement", count=saved + 2)
            assert 'probe_success{target="fast.test"}' in _scrape(port)
            assert _threads(daemon.proc.pid) <= threads + 1
        finally:
            for sock in held:
                sock.close()
        assert daemon.terminate() == 0
    assert len(measurements(db)) >= saved + 2


def test_a_clean_stop_between_reading_the_state_and_the_lock_is_not_called_unclean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`probe status` read the state (daemon running, no stop recorded), then the
    database, then the lock: a daemon that stopped cleanly in between was reported
    'stopped uncleanly' with its checks 'cut short'. The stop it recorded counts."""
    import schedules.daemon
    from probe.cli.daemon import _status
    from schedules.state import StateFile
    from storage.store import Store

    db = tmp_path / "probe.db"
    Store.open(f"sqlite:///{db}").close()  # a daemon that ran made its database
    config = load_config(
        write_config(tmp_path / "c.toml", resolver="127.0.0.1:9", domains=["a.test"], db=db),
        env={},
    )
    path = schedules.daemon.state_path(config)
    running = StateFile(path)
    running.update(pid=4242, started_at=NOW, stopped_at=None)
    running.update_target("a.test", last_started=NOW)

    def stops_cleanly_meanwhile(_: object) -> bool:
        stopped = StateFile(path)
        stopped.load()
        stopped.update(pid=None, stopped_at=NOW + MIN)
        stopped.update_target("a.test", last_finished=NOW + MIN)
        return False  # by the time the lock is looked at, the daemon is gone

    monkeypatch.setattr(schedules.daemon, "is_running", stops_cleanly_meanwhile)
    daemon = _status(config)["daemon"]
    assert daemon["stopped_uncleanly"] is None and daemon["cut_short"] == [], daemon
    assert daemon["stopped_at"] is not None
    running.update(pid=4242, started_at=NOW, stopped_at=None)
    assert health_problem(config) == "the daemon is not running"
