"""Dashboard benchmark: its main queries on a collector-sized database.

Not a test: run by hand (python benchmarks/bench_dashboard.py [--days 90])
and record the figures in docs/benchmarks.md.  The database is what a
collector would hold after ``--days`` of 15-minute measurements from
``--vantages`` vantages of X's 7 endpoints (100 x 7 x 90 days = 6,048,000
rows).  Only the measurement rows are seeded (bulk inserts of synthetic
summary rows, no observation documents: the dashboard's list and time view
never read those, and one evidence request reads one document by primary
key), so the figures are the queries', on the real schema and indexes.

Each request is timed end to end over HTTP: the dashboard's routes served by
uvicorn on loopback, a client asking in turn for ``/latest`` and a random
vantage's ``/series`` for each period, several times, median and 95th
percentile reported in ms.  Target: each request well under a second at the
full size, so the page stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform as host_platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.targets import load_platforms  # noqa: E402
from storage.store import Store  # noqa: E402

BATCH = 20_000
STEP = dt.timedelta(minutes=15)
PERIODS = ("1d", "7d", "30d", "90d")


def seed(store: Store, vantages: int, days: int, now: dt.datetime) -> tuple[int, float]:
    """Insert the rows; returns (rows, seconds).  Patterns: steady, blocked, flickering."""
    from sqlalchemy import insert

    from storage.models import vantages as vantage_table

    domains = load_platforms()["x"].domains
    rng = random.Random(13)
    names = [f"vantage-{i:03d}" for i in range(vantages)]
    ids: list[int] = []
    with store.database.engine.begin() as conn:
        for i, name in enumerate(names):
            values = {"key": f"bench-{name}", "name": name, "country": "PK", "asn": 64500 + i}
            values["network"] = f"ISP {i % 12}"
            inserted = conn.execute(insert(vantage_table).values(values)).inserted_primary_key
            assert inserted is not None
            ids.append(int(inserted[0]))
    steps = days * 96
    start = now - steps * STEP
    onset = steps // 3  # blocking starts a third of the way in, on most vantages
    sqlite = store.database.is_sqlite
    outcomes = {flag: _outcome(flag, sqlite) for flag in (False, True)}
    started = time.perf_counter()
    dropped = _drop_indexes(store)  # rebuilt after the load: much faster than kept up
    total = 0
    with store.database.engine.begin() as conn:
        writer = _Writer(conn.connection.driver_connection, sqlite)
        for index, vantage_id in enumerate(ids):
            pattern = ("blocked", "flicker", "steady")[index % 3]
            for step in range(steps):
                when = start + step * STEP
                stamp: Any = _sqlite_time(when) if sqlite else when
                for domain in domains:
                    if pattern == "steady" or step < onset:
                        blocked = rng.random() < 0.01
                    elif pattern == "blocked":
                        blocked = domain != "video.twimg.com" or rng.random() < 0.5
                    else:
                        blocked = rng.random() < 0.5
                    total += 1
                    key = f"{vantage_id:08x}-0000-4000-8000-{total:012x}"  # ascending: appends
                    writer.add((key, vantage_id, domain, domain, stamp, stamp, *outcomes[blocked]))
                    if total % 200_000 == 0:
                        print(f"\rseeded {total:,}", end="", file=sys.stderr, flush=True)
        writer.close()
    print(file=sys.stderr)
    with store.database.engine.begin() as conn:
        for statement in dropped:
            conn.exec_driver_sql(statement)
    return total, time.perf_counter() - started


COLUMNS = (
    "id", "vantage_id", "domain", "input", "started_at", "stored_at", "platform", "duration_ms",
    "resolver", "probe_version", "status", "blocking", "trigger", "reasons", "blockpage",
    "https_ok", "classifier_version", "dns_answers", "control_answers", "first_failure",
    "tls_failures", "http_status", "http_failures", "http_title", "tcp_ms", "tls_ms", "http_ms",
)  # fmt: skip


def _outcome(blocked: bool, sqlite: bool) -> tuple[Any, ...]:
    """The columns after stored_at, for a blocked or an accessible check."""
    https_ok = not blocked
    return (
        "x", 900.0, "udp://192.0.2.53:53", "bench",
        "blocked" if blocked else "accessible", "tls.reset" if blocked else "",
        "sni" if blocked else None, "[]", None, int(https_ok) if sqlite else https_ok,
        "bench", "198.51.100.7", "198.51.100.7", "tls:connection_reset" if blocked else None,
        "connection_reset" if blocked else "", None if blocked else 200, "", None, 30.0,
        None if blocked else 60.0, None if blocked else 120.0,
    )  # fmt: skip


def _sqlite_time(when: dt.datetime) -> str:
    """UTC text, as storage.models.UTCDateTime stores it in SQLite."""
    return when.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Writer:
    """Rows into measurements through the driver: executemany (SQLite) or COPY (PostgreSQL)."""

    def __init__(self, raw: Any, sqlite: bool) -> None:
        self._raw = raw
        self._sqlite = sqlite
        self._rows: list[tuple[Any, ...]] = []
        names = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        self._sql = f"INSERT INTO measurements ({names}) VALUES ({marks})"
        if not sqlite:
            self._cursor = raw.cursor()
            self._copy = self._cursor.copy(f"COPY measurements ({names}) FROM STDIN")
            self._copying = self._copy.__enter__()

    def add(self, row: tuple[Any, ...]) -> None:
        if not self._sqlite:
            self._copying.write_row(row)
            return
        self._rows.append(row)
        if len(self._rows) >= BATCH:
            self._raw.executemany(self._sql, self._rows)
            self._rows = []

    def close(self) -> None:
        if self._sqlite:
            if self._rows:
                self._raw.executemany(self._sql, self._rows)
        else:
            self._copy.__exit__(None, None, None)
            self._cursor.close()


def _drop_indexes(store: Store) -> list[str]:
    """Drop measurements' secondary indexes; returns the statements that recreate them."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateIndex

    from storage.models import measurements as table

    with store.database.engine.begin() as conn:
        existing = {i["name"] for i in inspect(conn).get_indexes("measurements")}
        statements = []
        for index in table.indexes:
            if index.name in existing:
                conn.exec_driver_sql(f"DROP INDEX {index.name}")
                statements.append(str(CreateIndex(index).compile(conn)))
    return statements


def serve(store: Store) -> tuple[str, Any, threading.Thread]:
    import uvicorn
    from starlette.applications import Starlette

    from collectors.dashboard import routes

    app = Starlette(routes=routes())
    app.state.store = store
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def timed(client: Any, url: str, params: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    response = client.get(url, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def describe(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1),
            "runs": len(ordered)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vantages", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=20, help="requests of each kind")
    parser.add_argument("--db", default=None, help="database URL (default: a new SQLite file)")
    parser.add_argument("--keep", action="store_true", help="reuse --db if it is seeded already")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results-dashboard.json"))
    args = parser.parse_args()

    import httpx

    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='bench-dashboard-')}/collector.db"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    with Store.open(url) as store:
        rows = store.count()
        seconds = 0.0
        if not (args.keep and rows):
            rows, seconds = seed(store, args.vantages, args.days, now)
            print(f"seeded {rows:,} rows in {seconds:.0f} s ({rows / seconds:,.0f} rows/s)")
        if store.database.is_sqlite:
            with store.database.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        else:
            with store.database.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        base, server, thread = serve(store)
        rng = random.Random(5)
        names = [f"vantage-{i:03d}" for i in range(args.vantages)]
        results: dict[str, Any] = {}
        with httpx.Client(base_url=base, timeout=120) as client:
            timed(client, "/api/dashboard/v1/latest")  # warm-up, not counted
            results["latest"] = describe(
                [timed(client, "/api/dashboard/v1/latest") for _ in range(args.runs)]
            )
            for period in PERIODS:
                results[f"series {period}"] = describe(
                    [
                        timed(
                            client,
                            "/api/dashboard/v1/series",
                            {"vantage": rng.choice(names), "period": period},
                        )
                        for _ in range(args.runs)
                    ]
                )
            results["page"] = describe([timed(client, "/") for _ in range(args.runs)])
        server.should_exit = True
        thread.join(timeout=10)
        backend = store.database.backend
    for name, figures in results.items():
        print(f"{name:>12}: median {figures['median_ms']:8.1f} ms  p95 {figures['p95_ms']:8.1f} ms")
    record = {
        "when": now.isoformat(),
        "backend": backend,
        "vantages": args.vantages,
        "days": args.days,
        "rows": rows,
        "seed_seconds": round(seconds, 1),
        "machine": f"{host_platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{host_platform.python_version()}",
        "load": Path("/proc/loadavg").read_text().split()[:3],
        "requests": results,
    }
    out = Path(args.results)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
