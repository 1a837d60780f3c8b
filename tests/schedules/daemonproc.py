"""Run ``python -m probe run`` as a real child process and watch its log.

Shared by the daemon process tests and the lab test: both need the daemon
exactly as systemd or Docker would run it (own process, signals, exit code).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAVED = re.compile(r"\(measurement ([0-9a-f-]{36})\)")  # the log line of a stored check
KEPT = re.compile(r"kept as ([0-9a-f-]{36})")  # ... of a check the database refused


def write_config(
    path: Path,
    *,
    resolver: str,
    domains: list[str],
    db: Path,
    interval: str = "2s",
    jitter: str = "0.2s",
    timeout: str = "3s",
    grace: str = "1s",
    control_resolvers: list[str] | None = None,
    control_domains: list[str] | None = None,
    control_sni: str = "control.test",
    ca_bundle: str = "",
    metrics: bool = True,
) -> Path:
    """A daemon config that only ever talks to ``resolver`` (loopback or lab)."""

    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"

    path.write_text(
        f"""
[vantage]
name = "test-vantage"
country = "PK"
asn = 64500
[targets]
platforms = []
domains = {toml_list(domains)}
[schedule]
interval = "{interval}"
jitter = "{jitter}"
shutdown_grace = "{grace}"
[checks]
resolver = "{resolver}"
control_resolvers = {toml_list(control_resolvers or [resolver])}
control_domains = {toml_list(control_domains or ["control.test"])}
control_sni = "{control_sni}"
timeout = "{timeout}"
ca_bundle = "{ca_bundle}"
[storage]
url = "sqlite:///{db}"
[metrics]
listen = "{"127.0.0.1:0" if metrics else ""}"
"""
    )
    return path


class DaemonProcess:
    """A ``probe run`` child; its stderr lines are collected as they come."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        """``prefix`` runs it elsewhere, e.g. ``("ip", "netns", "exec", NS)`` (which execs)."""
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "HOME": str(config.parent),
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "probe", "run", "--config", str(config)],
            cwd=config.parent,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20, count: int = 1) -> re.Match[str]:
        """The ``count``-th log line matching ``pattern``; fails with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = [m for m in (re.search(pattern, line) for line in list(self.lines)) if m]
            if len(matches) >= count:
                return matches[count - 1]
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r} within {timeout}s:\n{self.log}")

    def metrics_port(self) -> int:
        return int(self.wait_for(r"metrics on http://[0-9.]+:(\d+)/metrics").group(1))

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(2)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def measurements(db: Path) -> list[tuple[str, str, str]]:
    """(domain, started_at, status) of every stored measurement, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT domain, started_at, status FROM measurements ORDER BY started_at"
        ).fetchall()
    return [(str(d), str(s), str(v)) for d, s, v in rows]


@contextlib.contextmanager
def locker(db: Path, hold: float, pause: float, seed: int = 0) -> Iterator[list[int]]:
    """Another writer taking the database's write lock for ``hold`` s after pauses of
    ``pause`` s on average.  The pauses vary (0.5-1.5 x, seeded): with a fixed
    period, a daemon whose restart cycle took as long saved at the same phase each
    time, always outside the lock, and the test meant to see refusals saw none."""
    stop = threading.Event()
    held = [0]
    rng = random.Random(seed)

    def run() -> None:
        conn = sqlite3.connect(db, timeout=10, isolation_level=None)
        try:
            while not stop.wait(rng.uniform(pause / 2, pause * 1.5)):
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute("BEGIN IMMEDIATE")
                    held[0] += 1
                    stop.wait(hold)
                    conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield held
    finally:
        stop.set()
        thread.join(15)
