"""`probe run` in the lab's vantage namespace while the censor changes its mind:
clean -> SNI reset -> clean.  The stored measurements and the metrics must
follow the change, and SIGTERM must end it cleanly."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from tests.lab.netns import ns_run
from tests.lab.scenarios import SCENARIOS
from tests.lab.topology import Lab
from tests.schedules.daemonproc import DaemonProcess, integrity, write_config

pytestmark = pytest.mark.lab

SCRAPE = (
    "import sys, urllib.request as u; "
    "print(u.urlopen(f'http://127.0.0.1:{sys.argv[1]}/metrics', timeout=5).read().decode())"
)


def _scrape(lab: Lab, port: int) -> str:
    return ns_run(lab.vantage, sys.executable, "-c", SCRAPE, str(port))


def _stored(db: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            'SELECT status, blocking, "trigger" FROM measurements '
            "WHERE domain = 'x.com' ORDER BY started_at"
        ).fetchall()
    return [(str(s), str(b), t) for s, b, t in rows]


def _phases(rows: list[tuple[str, str, str | None]]) -> list[str]:
    """Consecutive runs collapsed: ["accessible", "blocked", "accessible"]."""
    out: list[str] = []
    for status, _, _ in rows:
        if not out or out[-1] != status:
            out.append(status)
    return out


def _lab_config(lab: Lab, tmp_path: Path, db: Path, metrics: bool = True) -> Path:
    """A daemon config measuring x.com through the lab, every 2 s."""
    return write_config(
        tmp_path / "c.toml",
        resolver=lab.net.isp_resolver,
        control_resolvers=[lab.net.internet_resolver],
        control_domains=["control.lab", "example.com"],
        control_sni="control.lab",
        ca_bundle=str(lab.ca_pem),
        domains=["x.com"],
        db=db,
        interval="2s",
        jitter="0.3s",
        timeout="4s",
        grace="6s",
        metrics=metrics,
    )


def test_daemon_follows_a_changing_censor(clean_lab: Lab, tmp_path: Path) -> None:
    lab = clean_lab
    tmp_path.chmod(0o755)
    db = tmp_path / "probe.db"
    config = _lab_config(lab, tmp_path, db)
    prefix = ("ip", "netns", "exec", lab.vantage)
    with DaemonProcess(config, prefix=prefix) as daemon:
        port = daemon.metrics_port()
        daemon.wait_for(r"x\.com: accessible in", timeout=30)
        clean = _scrape(lab, port)
        assert 'probe_success{target="x.com"} 1.0' in clean
        assert 'reachprobe_status{status="accessible",target="x.com"} 1.0' in clean

        SCENARIOS["sni_reset"].apply(lab)
        # The run in flight when the rule went in may still be clean: wait for two.
        daemon.wait_for(r"x\.com: blocked \(.*tls\.reset.*\) in", timeout=30, count=2)
        blocked = _scrape(lab, port)
        assert 'probe_success{target="x.com"} 0.0' in blocked
        assert 'reachprobe_blocking{method="tls.reset",target="x.com"} 1.0' in blocked
        assert 'reachprobe_verdict_total{status="blocked",target="x.com"}' in blocked
        assert 'probe_duration_seconds{target="x.com"}' in blocked
        assert 'reachprobe_failure{failure="connection_reset",phase="tls",target="x.com"} 1.0' in (
            blocked
        )
        assert 'reachprobe_phase_duration_seconds{phase="tls",target="x.com"}' not in blocked

        lab.reset()
        accessible_before = sum("x.com: accessible in" in line for line in daemon.lines)
        daemon.wait_for(r"x\.com: accessible in", timeout=30, count=accessible_before + 2)
        assert daemon.terminate() == 0
        log = daemon.log

    assert "Traceback" not in log, log
    assert "HTTP Request:" not in log, "httpx's per-request lines are not the journal's"
    assert integrity(db) == "ok"
    rows = _stored(db)
    assert _phases(rows) == ["accessible", "blocked", "accessible"], rows
    blocked_rows = [r for r in rows if r[0] == "blocked"]
    assert len(blocked_rows) >= 2
    assert all("tls.reset" in blocking.split(";") for _, blocking, _ in blocked_rows)
    assert {trigger for _, _, trigger in blocked_rows} == {"sni"}


def test_daemon_traces_a_blocked_target_once_per_interval(clean_lab: Lab, tmp_path: Path) -> None:
    """``[trace] when_blocked``: the first blocked check is traced (linked to its
    measurement), later blocked checks within ``min_interval`` are not."""
    lab = clean_lab
    tmp_path.chmod(0o755)
    db = tmp_path / "probe.db"
    config = _lab_config(lab, tmp_path, db, metrics=False)
    with config.open("a") as out:
        out.write('[trace]\nwhen_blocked = true\nmin_interval = "1h"\nmax_ttl = 8\nwait = "0.5s"\n')
    SCENARIOS["sni_reset"].apply(lab)
    prefix = ("ip", "netns", "exec", lab.vantage)
    with DaemonProcess(config, prefix=prefix) as daemon:
        daemon.wait_for(r"x\.com: traced \(trace ", timeout=60)
        blocked_before = sum("x.com: blocked" in line for line in daemon.lines)
        daemon.wait_for(r"x\.com: blocked \(", timeout=30, count=blocked_before + 2)
        assert daemon.terminate() == 0
        log = daemon.log
    assert "Traceback" not in log, log
    with sqlite3.connect(db) as conn:
        traces = conn.execute(
            "SELECT t.censor_hop, t.censor_address, t.interference, m.status "
            "FROM traces t JOIN measurements m ON m.id = t.measurement_id"
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
    assert total == 1, log  # once, though the target stayed blocked
    assert traces == [(2, lab.net.isp_lan, "tls.reset", "blocked")], log
