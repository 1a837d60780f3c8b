"""Crash safety of `probe run` in the lab: nothing measured is lost, nothing stored twice.

The daemon runs in the vantage namespace against the lab's sites and is
killed with SIGKILL at random moments 50 times while another writer keeps
taking the database's lock (so checks are spooled and drained, and some
kills land inside a drain); then it runs with the database locked for longer
than its busy timeout, and with the disk full (a small tmpfs).  After each:
``PRAGMA integrity_check`` is ok, every measurement the logs call saved or
kept is stored exactly once, and a restart is clean.
"""

from __future__ import annotations

import contextlib
import random
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.topology import Lab
from tests.schedules.daemonproc import KEPT, SAVED, DaemonProcess, integrity, locker, write_config

pytestmark = pytest.mark.lab


def _config(lab: Lab, tmp_path: Path, db: Path, busy_timeout: str = "0.3s") -> Path:
    tmp_path.chmod(0o755)
    path = write_config(
        tmp_path / "c.toml",
        resolver=lab.net.isp_resolver,
        control_resolvers=[lab.net.internet_resolver],
        control_domains=["control.lab"],
        control_sni="control.lab",
        ca_bundle=str(lab.ca_pem),
        domains=["x.com", "t.co"],
        db=db,
        interval="1s",
        jitter="0s",
        timeout="2s",
        grace="0.5s",
        metrics=False,
    )
    path.write_text(
        path.read_text().replace("[storage]\n", f'[storage]\nbusy_timeout = "{busy_timeout}"\n')
    )
    return path


def _daemon(lab: Lab, config: Path) -> DaemonProcess:
    return DaemonProcess(config, prefix=("ip", "netns", "exec", lab.vantage))


def _ids(log: str, pattern: re.Pattern[str]) -> set[str]:
    return set(pattern.findall(log))


def _stored(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, domain, started_at FROM measurements").fetchall()
    return [(str(i), str(d), str(s)) for i, d, s in rows]


def _assert_once(db: Path, promised: set[str]) -> list[tuple[str, str, str]]:
    """Integrity ok, every promised id stored, no measurement stored twice."""
    assert integrity(db) == "ok"
    rows = _stored(db)
    ids = [r[0] for r in rows]
    assert promised <= set(ids), sorted(promised - set(ids))
    moments = [(d, s) for _, d, s in rows]
    assert len(moments) == len(set(moments)), "a measurement was stored twice"
    return rows


def _finish(lab: Lab, config: Path, db: Path) -> str:
    """A clean run that drains whatever was spooled, then SIGTERM: exit 0."""
    before = len(_stored(db))
    with _daemon(lab, config) as daemon:
        daemon.wait_for(r"started:", timeout=30)
        daemon.wait_for(SAVED.pattern, timeout=30, count=2)
        assert daemon.terminate() == 0
        log = daemon.log
    assert "Traceback" not in log and "internal error" not in log, log
    assert len(_stored(db)) > before
    spool = db.with_name(db.name + ".daemon.json.unsaved.jsonl")
    assert not spool.exists() and not spool.with_name(spool.name + ".draining").exists()
    return log


@pytest.mark.timeout(900)  # ~1.5 min on an idle machine; each restart costs a start-up
def test_fifty_sigkills_lose_nothing_saved_and_store_nothing_twice(
    clean_lab: Lab, tmp_path: Path
) -> None:
    db = tmp_path / "probe.db"
    config = _config(clean_lab, tmp_path, db)
    rng = random.Random(10)
    logs: list[str] = []
    with _daemon(clean_lab, config) as first:  # create the database before the locker
        first.wait_for(SAVED.pattern, timeout=30)
        first.kill()
        logs.append(first.log)
    with locker(db, hold=0.8, pause=0.7) as held:
        for _ in range(50):
            with _daemon(clean_lab, config) as daemon:
                # After a first save or refusal: the kill lands between checks,
                # inside one, or inside the drain of the spool.
                daemon.wait_for(f"{SAVED.pattern}|{KEPT.pattern}", timeout=30)
                time.sleep(rng.uniform(0, 0.4))
                daemon.kill()
                logs.append(daemon.log)
    log = "\n".join(logs)
    saved, kept = _ids(log, SAVED), _ids(log, KEPT)
    assert held[0] >= 10 and kept, (held, log[-3000:])  # refusals happened and were spooled
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    finish = _finish(clean_lab, config, db)
    rows = _assert_once(db, saved | kept | _ids(finish, SAVED))
    print(f"\n50 SIGKILLs: {len(rows)} stored, {len(kept)} spooled and stored once, "
          f"{len(saved)} logged as saved, lock taken {held[0]} times")  # fmt: skip


def test_a_database_locked_past_its_busy_timeout_spools_and_stores_once(
    clean_lab: Lab, tmp_path: Path
) -> None:
    db = tmp_path / "probe.db"
    config = _config(clean_lab, tmp_path, db, busy_timeout="0.5s")
    with _daemon(clean_lab, config) as daemon:
        daemon.wait_for(SAVED.pattern, timeout=30)
        with sqlite3.connect(db, isolation_level=None) as locker:
            locker.execute("BEGIN IMMEDIATE")  # held for ~6 s, twelve busy timeouts
            daemon.wait_for(r"database refused the measurement .* kept as", timeout=30, count=4)
            locker.execute("ROLLBACK")
        daemon.wait_for(r"stored \d+ spooled measurements", timeout=30)

        # SIGTERM while a save waits on the lock: out within the grace, spooled.
        with sqlite3.connect(db, isolation_level=None, timeout=10) as locker:
            locker.execute("BEGIN IMMEDIATE")
            daemon.wait_for(r"database refused the measurement .* kept as", timeout=30, count=5)
            started = time.monotonic()
            assert daemon.terminate(timeout=10) == 0
            took = time.monotonic() - started
            locker.execute("ROLLBACK")
        log = daemon.log
    assert took < 5, took  # was ~40 s: the exit waited for the save thread
    finish = _finish(clean_lab, config, db)
    rows = _assert_once(db, _ids(log, SAVED) | _ids(log, KEPT) | _ids(finish, SAVED))
    print(f"\nlocked database: {len(_ids(log, KEPT))} spooled, {len(rows)} stored, "
          f"SIGTERM during a locked save took {took:.1f} s")  # fmt: skip


def test_a_full_disk_keeps_measuring_and_stores_every_measurement_once(
    clean_lab: Lab, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        db = disk / "probe.db"
        config = _config(clean_lab, tmp_path, db, busy_timeout="0.5s")
        filler = disk / "filler"
        with _daemon(clean_lab, config) as daemon:
            daemon.wait_for(SAVED.pattern, timeout=30, count=2)
            with contextlib.suppress(OSError), open(filler, "wb") as handle:
                while True:  # the disk is full: database, spool and state file all refused
                    handle.write(b"\0" * 65536)
                    handle.flush()
            daemon.wait_for(r"kept as [0-9a-f-]{36} in memory", timeout=30, count=4)
            filler.unlink()
            daemon.wait_for(r"stored \d+ spooled measurements", timeout=30)
            saved_after = len(_ids(daemon.log, SAVED))
            daemon.wait_for(SAVED.pattern, timeout=30, count=saved_after + 1)  # still measuring
            assert daemon.terminate() == 0
            log = daemon.log
        assert "Traceback" not in log and "internal error" not in log, log
        assert "cannot write the daemon state" in log
        kept = _ids(log, KEPT)
        rows = _assert_once(db, _ids(log, SAVED) | kept)
        print(f"\nfull disk: {len(kept)} kept in memory and stored once, {len(rows)} stored")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
