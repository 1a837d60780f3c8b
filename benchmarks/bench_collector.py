"""Collector benchmark: ingest into PostgreSQL, and a 100,000-measurement backlog upload.

Not a test: run by hand as root (python benchmarks/bench_collector.py) and
record the figures in docs/benchmarks.md.  Starts a throwaway PostgreSQL
cluster with fsync on (as deployed), unless $PROBE_TEST_PG_URL names a server.

1. Ingest in-process: what the collector does per request after reading the
   body (gunzip, parse and strictly validate every line, one transaction with
   ON CONFLICT), for batches of 100 and of 1,000 measurements.
2. Ingest over HTTP: ``probe collector serve`` (one uvicorn process, or two
   behind the clients as a load balancer would spread them) on loopback,
   batches POSTed gzipped by two client threads.
3. Backlog: a probe's SQLite database with ``--backlog`` measurements (bulk
   seeded), sent by ``probe upload`` (a real process) to the served collector.

Each figure has the collector's CPU seconds (its start-up excluded) and, for
the cluster started here, PostgreSQL's: collector and database share the
machine, so measurements per CPU-second of both is what two idle cores give.

The CPUs of this VM are shared with other jobs: each figure comes with the
load average and the CPU seconds it used.  Target: >= 5,000 measurements/s.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_storage import load, seed  # noqa: E402
from collectors import protocol  # noqa: E402
from collectors.server.batch import decompress, parse_batch  # noqa: E402
from storage.ingest import ingest  # noqa: E402
from storage.registry import Registry  # noqa: E402
from storage.store import Store  # noqa: E402
from tests.collectors import helpers as H  # noqa: E402
from tests.collectors.collectorproc import CollectorProcess, probe_env  # noqa: E402
from tests.storage import factories  # noqa: E402
from tests.storage.pgcluster import throwaway_cluster  # noqa: E402


@contextlib.contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("PROBE_TEST_PG_URL")
    if url:
        yield url
        return
    with throwaway_cluster(fsync=True) as started:
        yield started


def fresh_database(server_url: str, name: str) -> str:
    import psycopg
    from sqlalchemy import make_url

    base = make_url(server_url)
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def bodies(count: int, batch: int) -> list[bytes]:
    """``count`` distinct measurements of PTCL as gzipped JSONL bodies of ``batch``."""
    items = H.batch(count)
    out = []
    for i in range(0, count, batch):
        out.append(gzip.compress(H.jsonl(items[i : i + batch]), compresslevel=6))
    return out


def timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_in_process(url: str, count: int, batch: int, pg: str) -> dict[str, Any]:
    payloads = bodies(count, batch)
    with Store.open(url) as store:
        registration = Registry(store.database).add(H.PTCL)[0]

        def run() -> None:
            for body in payloads:
                items = parse_batch(
                    decompress(body, "gzip", protocol.MAX_BODY), "lahore-ptcl", max_batch=5000
                )
                ingest(store.database, registration, items)

        before = load()
        pg_before = postgres_cpu(pg)
        wall, cpu = timed(run)
    return _figures(count, batch, wall, cpu, before) | _postgres(pg, pg_before, count, cpu)


def bench_http(
    url: str,
    count: int,
    batch: int,
    log: Path,
    pg: str,
    clients: int = 2,
    processes: int = 1,
    workers: int = 1,
) -> dict[str, Any]:
    """``clients`` threads POSTing to ``processes`` collector processes (client i to
    process i mod processes: what a load balancer in front of them would do), each
    with ``workers`` server processes on its one address (``--workers``)."""
    import httpx

    payloads = bodies(count, batch)
    with Store.open(url) as store:
        token = Registry(store.database).add(H.PTCL)[1]
    collectors = [
        CollectorProcess(
            url, log.with_suffix(f".{i}.log"), extra=("--rate", "0", "--workers", str(workers))
        ).start()
        for i in range(processes)
    ]
    try:
        chunks = [payloads[i::clients] for i in range(clients)]
        errors: list[str] = []

        def client(mine: list[bytes], collector: CollectorProcess) -> None:
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": protocol.CONTENT_TYPE,
                "Content-Encoding": "gzip",
            }
            with httpx.Client(base_url=collector.url, timeout=120) as http:
                for body in mine:
                    answer = http.post(protocol.MEASUREMENTS_PATH, content=body, headers=headers)
                    if answer.status_code != 200:
                        errors.append(answer.text)

        def run() -> None:
            threads = [
                threading.Thread(target=client, args=(c, collectors[i % processes]))
                for i, c in enumerate(chunks)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        if workers > 1:  # every worker has started (and logged so)
            for c in collectors:
                while c.output().count("Application startup complete") < workers:
                    time.sleep(0.05)
        before = load()
        pg_before = postgres_cpu(pg)
        started = sum(_cpu_of(c) for c in collectors)  # imports, migration check
        wall, _ = timed(run)
        assert not errors, errors[:3]
        cpu = sum(_cpu_of(c) for c in collectors) - started
    finally:
        for c in collectors:
            c.stop()
    postgres = _postgres(pg, pg_before, count, cpu)
    with Store.open(url) as store:
        assert store.count() == count, (store.count(), count)
    return (
        _figures(count, batch, wall, cpu, before)
        | postgres
        | {
            "clients": clients,
            "processes": processes,
            "workers": workers,
        }
    )


def bench_backlog(url: str, backlog: int, batch: int, workdir: Path, pg: str) -> dict[str, Any]:
    probe_db = f"sqlite:///{workdir / 'probe.db'}"
    with Store.open(probe_db) as store:
        seed(store, backlog)  # lahore-ptcl, like tests.storage.factories.VANTAGE
    with Store.open(url) as store:
        token = Registry(store.database).add(factories.VANTAGE)[1]
    collector = CollectorProcess(url, workdir / "backlog.log", extra=("--rate", "0")).start()
    try:
        argv = [sys.executable, "-m", "probe", "upload", "--collector", collector.url,
                "--db", probe_db, "--batch", str(batch)]  # fmt: skip
        env = probe_env() | {"REACHPROBE_UPLOAD_TOKEN": token}
        before = load()
        pg_before = postgres_cpu(pg)
        started = _cpu_of(collector)  # imports, migration check
        start = time.perf_counter()
        probe_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - start
        probe_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        probe_cpu = sum(getattr(probe_after, f) - getattr(probe_before, f) for f in _CPU)
        assert done.returncode == 0, done.stderr
        cpu = _cpu_of(collector) - started
    finally:
        collector.stop()
    postgres = _postgres(pg, pg_before, backlog, cpu)
    with Store.open(url) as store:
        stored = store.count()
    assert stored == backlog, (stored, backlog)
    return (
        _figures(backlog, batch, wall, cpu, before)
        | postgres
        | {"probe_cpu_seconds": round(probe_cpu, 2), "output": done.stdout.strip()}
    )


_CPU = ("ru_utime", "ru_stime")


def postgres_cpu(server_url: str) -> float | None:
    """CPU seconds used so far by the benchmark's PostgreSQL cluster (every process of
    it, the exited backends included); None for a server we did not start."""
    from sqlalchemy import make_url

    host = make_url(server_url).query.get("host")
    pidfile = Path(str(host)) / "data" / "postmaster.pid"
    if not isinstance(host, str) or not pidfile.exists():
        return None
    return _tree_cpu(int(pidfile.read_text().split()[0]))


def _cpu_of(collector: CollectorProcess) -> float:
    """CPU seconds of the server process and of its workers (``--workers``)."""
    assert collector.proc is not None
    return _tree_cpu(collector.proc.pid)


def _tree_cpu(parent: int) -> float:
    """CPU seconds of ``parent`` (its own, and its reaped children's) and of its live
    children: a postmaster and its backends, a collector and its workers."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == parent:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == parent:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _postgres(pg: str, before: float | None, count: int, collector: float) -> dict[str, Any]:
    """PostgreSQL's CPU seconds since ``before``, and measurements per CPU-second of
    collector and PostgreSQL together: what the machine can ingest with idle cores."""
    after = postgres_cpu(pg)
    if before is None or after is None:
        return {}
    used = after - before
    return {
        "postgres_cpu_seconds": round(used, 2),
        "per_cpu_second_with_postgres": round(count / (collector + used)),
    }


def _figures(count: int, batch: int, wall: float, cpu: float, before: float) -> dict[str, Any]:
    return {
        "measurements": count,
        "batch": batch,
        "seconds": round(wall, 2),
        "per_second": round(count / wall),
        "collector_cpu_seconds": round(cpu, 2),
        "per_cpu_second": round(count / cpu) if cpu else None,
        "load_before": before,
        "load_after": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="measurements per ingest run")
    parser.add_argument("--backlog", type=int, default=100_000, help="0: no backlog run")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results-collector.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with server() as pg, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for batch in (100, 1000):
            url = fresh_database(pg, f"bench_inproc_{batch}")
            figures = bench_in_process(url, args.count, batch, pg)
            results[f"in_process_batch_{batch}"] = figures
            print(f"in-process, batches of {batch}: {figures}", flush=True)
        for batch, processes, workers in ((100, 1, 1), (1000, 1, 1), (1000, 2, 1), (1000, 1, 2)):
            url = fresh_database(pg, f"bench_http_{batch}_{processes}_{workers}")
            log = workdir / f"http-{batch}-{processes}-{workers}.log"
            figures = bench_http(
                url, args.count, batch, log, pg, processes=processes, workers=workers
            )
            key = f"http_batch_{batch}" + (f"_{processes}_processes" if processes > 1 else "")
            key += f"_{workers}_workers" if workers > 1 else ""
            results[key] = figures
            print(f"HTTP, batches of {batch}, {processes} process(es) of {workers} worker(s): "
                  f"{figures}", flush=True)  # fmt: skip
        if args.backlog:
            url = fresh_database(pg, "bench_backlog")
            figures = bench_backlog(url, args.backlog, 500, workdir, pg)
            results["backlog"] = figures
            print(f"backlog: {figures}", flush=True)
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
