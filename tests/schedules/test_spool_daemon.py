"""The spool under a real ``probe run``: hundreds of refusals, every one stored once.

The daemon checks 40 loopback targets every second, 16 at a time (each check
is a few DNS queries, so refusals come fast), while its PostgreSQL database
is stopped and started with ``pg_ctl`` four times.  (SQLite locked past its
busy timeout, under SIGKILLs, and a full disk: tests/lab/test_crash_safety.py.)  Refused saves are
appended to the spool while earlier ones are drained by other checks' saves.
Afterwards the rows are counted: every measurement the daemon logged as saved
or kept is stored exactly once, and nothing else is stored.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.probe.checks.dnsserver import DNSServer, answer, serve_in_thread
from tests.schedules.daemonproc import (
    KEPT,
    ROOT,
    SAVED,
    DaemonProcess,
    write_config,
)
from tests.storage.conftest import pg_server, pg_url
from tests.storage.pgcluster import Unavailable, pg_ctl

__all__ = ["pg_server", "pg_url"]

DOMAINS = [f"t{i:02d}.test" for i in range(40)]
REFUSALS = 200  # at least, over the whole run


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    with serve_in_thread({d: answer("127.0.0.9") for d in DOMAINS}) as server:
        yield server


def _config(tmp_path: Path, dns: DNSServer, url: str, busy_timeout: str = "0.3s") -> Path:
    config = write_config(
        tmp_path / "c.toml",
        resolver=dns.spec,
        domains=DOMAINS,
        db=tmp_path / "unused.db",
        interval="1s",
        jitter="0.2s",
        timeout="1s",
        grace="0.5s",
        metrics=False,
    )
    body = config.read_text().replace("[checks]\n", "[checks]\nconcurrency = 16\n")
    body = re.sub(
        r'url = "sqlite:///[^"]*"', f'url = "{url}"\nbusy_timeout = "{busy_timeout}"', body
    )
    config.write_text(body)
    return config


def _ids(log: str, pattern: re.Pattern[str]) -> set[str]:
    return set(pattern.findall(log))


def _import_leftovers(spool: Path, url: str) -> None:
    """Measurements spooled by the shutdown itself: imported as an operator would."""
    for path in (spool.with_name(spool.name + ".draining"), spool):
        if path.exists() and path.stat().st_size:
            done = subprocess.run(
                [sys.executable, "-m", "probe", "import", "jsonl", str(path), "--db", url],
                capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr


def _assert_each_once(rows: list[tuple[str, str, str]], log: str) -> tuple[int, int]:
    """Every id logged as saved or kept stored once, and nothing else; (kept, stored)."""
    saved, kept = _ids(log, SAVED), _ids(log, KEPT)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "an id stored twice"
    moments = [(d, s) for _, d, s in rows]
    assert len(moments) == len(set(moments)), "a measurement stored twice under two ids"
    assert set(ids) == saved | kept, (
        sorted((saved | kept) - set(ids)),
        sorted(set(ids) - saved - kept),
    )
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    assert "LOST" not in log and "NOT stored" not in log, log[-3000:]
    return len(kept), len(rows)


@pytest.mark.timeout(240)
def test_postgresql_stopped_and_started_under_the_daemon_stores_every_check_once(
    tmp_path: Path, dns: DNSServer, pg_url: str
) -> None:
    try:
        pg_ctl(pg_url, "status")
    except Unavailable as exc:
        pytest.skip(str(exc))
    config = _config(tmp_path, dns, pg_url)
    env = {"STATE_DIRECTORY": str(tmp_path)}
    with DaemonProcess(config, env=env) as daemon:
        daemon.wait_for(SAVED.pattern, timeout=30, count=5)
        for outage in range(4):  # 52+ refusals each
            refused = len(_ids(daemon.log, KEPT))
            pg_ctl(pg_url, "stop", "-m", "fast")
            try:
                daemon.wait_for(KEPT.pattern, timeout=60, count=refused + REFUSALS // 4 + 2)
            finally:
                pg_ctl(pg_url, "start")
            daemon.wait_for(r"stored \d+ spooled measurements", timeout=60, count=outage + 1)
        saved = len(_ids(daemon.log, SAVED))
        daemon.wait_for(SAVED.pattern, timeout=30, count=saved + 10)  # measuring on
        assert daemon.terminate() == 0
    _import_leftovers(tmp_path / "daemon.json.unsaved.jsonl", pg_url)
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = [
                (str(i), str(d), str(s))
                for i, d, s in conn.execute(text("SELECT id, domain, started_at FROM measurements"))
            ]
    finally:
        engine.dispose()
    kept, stored = _assert_each_once(rows, daemon.log)
    assert kept >= REFUSALS, kept
    print(f"\nPostgreSQL stopped 4 times: {kept} refused and spooled, {stored} stored once each")
