"""Idle footprint of ``probe run``: resident memory and CPU while waiting.

The Raspberry Pi budget (issue: idle RSS <= 80 MB, idle CPU ~0) is a target
to report against, not a test assertion.  The daemon checks one loopback
name once (so every module a check needs is loaded), then idles with a long
interval while RSS and CPU ticks are sampled from /proc.

    unshare --net sh -c 'ip link set lo up && python -m benchmarks.bench_daemon'
Writes benchmarks/results-daemon.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from tests.probe.checks.dnsserver import answer, serve_in_thread
from tests.schedules.daemonproc import DaemonProcess, write_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds to sample")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-daemon.json"))
    args = parser.parse_args()
    tick = os.sysconf("SC_CLK_TCK")

    results = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_in_thread({"fast.test": answer("127.0.0.2")}) as dns,
    ):
        directory = Path(tmp)
        config = write_config(
            directory / "probe.toml",
            resolver=dns.spec,
            domains=["fast.test"],
            db=directory / "probe.db",
            interval="1h",
            jitter="0s",
        )
        # The first start creates the database (Alembic is imported to migrate
        # it); every later start, the steady state of a Pi, finds it current.
        for run in ("first_start", "restart"):
            # Forget the schedule so the restart also checks at once (and so
            # loads everything a check needs) instead of resuming in an hour.
            (directory / "probe.db.daemon.json").unlink(missing_ok=True)
            results[run] = _idle(config, args.idle, tick)

    result = {"idle_seconds": args.idle, **results, "target": {"idle_rss_mb": 80, "idle_cpu": "~0"}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _idle(config: Path, seconds: float, tick: int) -> dict[str, float]:
    with DaemonProcess(config) as daemon:
        daemon.wait_for(r"fast\.test: .*measurement")
        time.sleep(1.0)
        pid = daemon.proc.pid
        ticks = _cpu_ticks(pid)
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(_status(pid, "VmRSS"))
            time.sleep(1.0)
        idle_cpu_s = (_cpu_ticks(pid) - ticks) / tick
        peak = _status(pid, "VmHWM")
        status = daemon.terminate()
    return {
        "idle_rss_mb": round(max(samples) / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "idle_cpu_seconds": round(idle_cpu_s, 3),
        "idle_cpu_percent": round(100 * idle_cpu_s / seconds, 3),
        "exit_status_on_sigterm": status,
    }


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


if __name__ == "__main__":
    main()
