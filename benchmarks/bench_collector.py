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

Single runs of a few seconds vary by up to a third on this VM, so every
ingest row is run ``--repeat`` times (the rows take turns, each run on a
fresh database) and reported run by run, with the median and the range.  The
HTTP runs send ``--http-count`` measurements each (30,000: 6-10 s a run).
With ``--workers``, each worker's CPU seconds are reported too: the two
clients keep their connections, and the kernel may hand both to one worker
(then one core decodes for both, and the run says so).

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_storage import load, seed  # noqa: E402
from collectors import protocol  # noqa: E402
from collectors.server.batch import decompress, parse_batch  # noqa: E402
from storage.ingest import ingest  # noqa: E402
from storage.jsonl import encode  # noqa: E402
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


TEMPLATES = 1000  # measurements built by the factories; the rest are copies with new ids


def bodies(count: int, batch: int) -> list[bytes]:
    """``count`` distinct measurements of PTCL as gzipped JSONL bodies of ``batch``.

    Built before the clock starts.  The first ``TEMPLATES`` come from the test
    factories (~1.2 ms each to build); the others are their lines with a fresh
    measurement id, so a 30,000-measurement run does not spend half a minute
    building its input.  The collector's work per line is the same.
    """
    items = H.batch(min(count, TEMPLATES))
    templates = [((json.dumps(encode(i)) + "\n").encode(), i.row.id.encode()) for i in items]
    lines = []
    for n in range(count):
        line, old = templates[n % len(templates)]
        lines.append(line if n < len(templates) else line.replace(old, str(uuid.uuid4()).encode()))
    return [
        gzip.compress(b"".join(lines[i : i + batch]), compresslevel=6)
        for i in range(0, count, batch)
    ]


def timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_in_process(url: str, payloads: list[bytes], batch: int, pg: str) -> dict[str, Any]:
    count = _measurements(payloads)
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
    payloads: list[bytes],
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

    count = _measurements(payloads)
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
        workers_before = [_workers_cpu(c) for c in collectors]
        wall, _ = timed(run)
        assert not errors, errors[:3]
        cpu = sum(_cpu_of(c) for c in collectors) - started
        shares = [
            sorted(round(after[pid] - before.get(pid, 0.0), 2) for pid in after)
            for before, after in zip(workers_before, map(_workers_cpu, collectors), strict=True)
        ]
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
        | ({"workers_cpu_seconds": shares} if workers > 1 else {})
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


def _measurements(payloads: list[bytes]) -> int:
    return sum(gzip.decompress(body).count(b"\n") for body in payloads)


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


def _workers_cpu(collector: CollectorProcess) -> dict[int, float]:
    """CPU seconds of each live worker of a ``--workers`` collector: how the kernel
    spread the clients' keep-alive connections over them."""
    assert collector.proc is not None
    parent = collector.proc.pid
    return {pid: (t[0] + t[1]) / _TCK for pid, ppid, t in _processes() if ppid == parent}


def _tree_cpu(parent: int) -> float:
    """CPU seconds of ``parent`` (its own, and its reaped children's) and of its live
    children: a postmaster and its backends, a collector and its workers."""
    total = 0
    for pid, ppid, ticks in _processes():
        if pid == parent:
            total += sum(ticks)  # utime, stime, cutime, cstime
        elif ppid == parent:
            total += ticks[0] + ticks[1]
    return total / _TCK


def _processes() -> Iterator[tuple[int, int, list[int]]]:
    """(pid, parent pid, [utime, stime, cutime, cstime] in clock ticks) of each process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(stat.parent.name), int(fields[1]), [int(f) for f in fields[11:15]]


_TCK = os.sysconf("SC_CLK_TCK")


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
        "cpu_ms_per_measurement": round((collector + used) * 1000 / count, 4),
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


# The ingest rows: (key, batch, processes, workers); processes 0 is in-process.
ROWS = (
    ("in_process_batch_100", 100, 0, 1),
    ("in_process_batch_1000", 1000, 0, 1),
    ("http_batch_100", 100, 1, 1),
    ("http_batch_1000", 1000, 1, 1),
    ("http_batch_1000_2_processes", 1000, 2, 1),
    ("http_batch_1000_2_workers", 1000, 1, 2),
)
SUMMARISED = ("per_second", "per_cpu_second", "per_cpu_second_with_postgres")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every run, and the median and range of each rate over them."""
    out: dict[str, Any] = {"runs": runs}
    for name in (*SUMMARISED, "cpu_ms_per_measurement"):
        values = [r[name] for r in runs if r.get(name) is not None]
        if values:
            median = statistics.median(values)
            out[name] = {"median": median, "min": min(values), "max": max(values)}
    return out


def describe(key: str, figures: dict[str, Any]) -> str:
    parts = [f"{key}:"]
    for name in SUMMARISED:
        if name in figures:
            f = figures[name]
            parts.append(f"{name} {f['median']:,.0f} ({f['min']:,}-{f['max']:,})")
    runs = figures["runs"]
    if "workers_cpu_seconds" in runs[0]:
        parts.append(f"workers' CPU s {[r['workers_cpu_seconds'] for r in runs]}")
    seconds = [r["seconds"] for r in runs]
    loads = ", ".join(f"{r['load_before']}-{r['load_after']}" for r in runs)
    parts.append(f"[{len(runs)} run(s) of {runs[0]['measurements']:,} in {min(seconds)}-"
                 f"{max(seconds)} s; load {loads}]")  # fmt: skip
    return " ".join(parts)


def main() -> None:
    keys = [key for key, *_ in ROWS]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="measurements per in-process run")
    parser.add_argument("--http-count", type=int, default=30_000, help="measurements per HTTP run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each ingest row")
    parser.add_argument(
        "--rows", nargs="*", choices=keys, default=keys, help="ingest rows to run (default all)"
    )
    parser.add_argument("--backlog", type=int, default=100_000, help="0: no backlog run")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results-collector.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeat": args.repeat,
    }
    rows = [row for row in ROWS if row[0] in args.rows]
    payloads: dict[tuple[int, int], list[bytes]] = {}
    for _key, batch, processes, _workers in rows:
        count = args.http_count if processes else args.count
        if (count, batch) not in payloads:
            payloads[count, batch] = bodies(count, batch)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in rows}
    with server() as pg, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for repeat in range(args.repeat):  # the rows take turns: load changes hit all alike
            for key, batch, processes, workers in rows:
                url = fresh_database(pg, f"bench_{key}")
                if processes:
                    sent = payloads[args.http_count, batch]
                    log = workdir / f"{key}-{repeat}.log"
                    figures = bench_http(
                        url, sent, batch, log, pg, processes=processes, workers=workers
                    )
                else:
                    figures = bench_in_process(url, payloads[args.count, batch], batch, pg)
                runs[key].append(figures)
                print(f"{key} run {repeat + 1}: {figures}", flush=True)
        for key in runs:
            results[key] = summary(runs[key])
        if args.backlog:
            url = fresh_database(pg, "bench_backlog")
            figures = bench_backlog(url, args.backlog, 500, workdir, pg)
            results["backlog"] = figures
            print(f"backlog: {figures}", flush=True)
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    print()
    for key in runs:
        print(describe(key, results[key]))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
