"""Storage benchmark: save() rate, bulk seeding, and CSV export of a million rows.

Not a test: run by hand (python benchmarks/bench_storage.py [--rows N]) and
record the figures in docs/benchmarks.md.  Each export runs in a fresh
process so its peak RSS is not inflated by the seeding.  The headline is
``probe export csv``'s real path (export_csv with the registered timeline
columns); the fast path without extra columns and the generic path are
timed too, and the files of both paths compared.  The CPUs of this VM are
shared, so each run also records its CPU time and the load average.
Target: CSV export of >= 100,000 rows/s from SQLite in flat memory.  The
export runs with one process per CPU (at most 4), as ``probe export csv``
does by default, and with ``--jobs 1``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.observations import to_dict  # noqa: E402
from storage.models import measurements, observations  # noqa: E402
from storage.records import ALL_MEASUREMENTS  # noqa: E402
from storage.store import Store  # noqa: E402
from tests.storage import factories  # noqa: E402

SEED_BATCH = 10_000
MODES = ("reported", "reported-1", "csv", "generic")  # see export_child
DOMAINS = [f"site{i}.example" for i in range(50)] + ["x.com", "twitter.com", "t.co"]
STATUSES = ["accessible"] * 6 + ["blocked"] * 3 + ["inconclusive"]


def bench_save(store: Store, count: int) -> float:
    obs, verdict = factories.blocked_sni(), factories.BLOCKED
    start = time.perf_counter()
    for _ in range(count):
        store.save(obs, verdict, factories.VANTAGE)
    return count / (time.perf_counter() - start)


def seed(store: Store, count: int) -> float:
    """Bulk insert synthetic rows (one shared observation document) in big transactions."""
    rng = random.Random(7)
    data = to_dict(factories.accessible())
    vantage_id = store.database.write(lambda conn: store._vantage_id(conn, factories.VANTAGE))
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    start = time.perf_counter()
    done = 0
    while done < count:
        n = min(SEED_BATCH, count - done)
        rows: list[dict[str, Any]] = []
        for i in range(done, done + n):
            status = rng.choice(STATUSES)
            blocked = status == "blocked"
            rows.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "vantage_id": vantage_id,
                    "domain": rng.choice(DOMAINS),
                    "input": "https://x.com/",
                    "platform": "x",
                    "started_at": t0 + dt.timedelta(seconds=i * 30),
                    "duration_ms": round(rng.uniform(50, 5000), 2),
                    "resolver": "udp://192.0.2.53:53",
                    "probe_version": "0.1.0",
                    "stored_at": t0,
                    "status": status,
                    "blocking": "dns.injection;tls.reset" if blocked else "",
                    "trigger": "sni" if blocked else None,
                    "reasons": ["synthetic"],
                    "blockpage": None,
                    "https_ok": not blocked,
                    "classifier_version": "1",
                    "dns_answers": "198.51.100.7;2001:db8::7",
                    "control_answers": "203.0.113.10",
                    "first_failure": "tls:connection_reset" if blocked else None,
                    "tls_failures": "connection_reset" if blocked else "",
                    "http_status": None if blocked else 200,
                    "http_failures": "connection_reset" if blocked else "",
                    "http_title": None if blocked else 'Example, "quoted" title',
                    "tcp_ms": round(rng.uniform(5, 300), 1),
                    "tls_ms": None if blocked else round(rng.uniform(10, 400), 1),
                    "http_ms": None if blocked else round(rng.uniform(20, 900), 1),
                }
            )
        obs_rows = [{"measurement_id": r["id"], "data": data} for r in rows]

        def insert_batch(
            conn: Any, rows: list[dict[str, Any]] = rows, obs_rows: list[dict[str, Any]] = obs_rows
        ) -> None:
            conn.execute(measurements.insert(), rows)
            conn.execute(observations.insert(), obs_rows)

        store.database.write(insert_batch)
        done += n
        print(f"\rseeded {done:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return count / (time.perf_counter() - start)


def load() -> float:
    """1-minute load average: how busy the shared CPUs were."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def export_child(url: str, out: str, mode: str = "csv") -> None:
    """Runs in a fresh process: export everything, report time and memory as JSON.

    ``mode``: "reported" is export_csv as ``probe export csv`` runs it (the
    timeline's reported-status columns registered, one process per CPU up to
    4), "reported-1" the same in one process, "csv" export_csv without extra
    columns (one process per CPU), "generic" / "generic-reported" the
    backend-neutral path that must write the same bytes.  CPU time and peak
    memory include the export's worker processes.
    """
    from storage import export
    from storage.export_jobs import default_jobs
    from storage.timeline import register_csv_columns, reported_csv_columns

    jobs = 1 if mode == "reported-1" else default_jobs()
    with Store.open(url) as store:
        if mode.startswith("reported"):
            register_csv_columns()
        before = resource.getrusage(resource.RUSAGE_SELF)
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = load()
        start = time.perf_counter()
        with open(out, "w", encoding="utf-8", newline="") as handle:
            if mode.startswith("generic"):
                extra = reported_csv_columns(store) if mode == "generic-reported" else []
                rows = export.export_generic(store, handle, ALL_MEASUREMENTS, extra)
            elif mode.startswith("reported"):
                rows = export.export_csv(store, handle, jobs=jobs)
            else:
                rows = export.export_csv(store, handle, extra=[], jobs=jobs)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in ((after, before), (children, before_children))
    )
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "load": [load_before, load()],
                "jobs": jobs if not mode.startswith("generic") else 1,
                "rss_before_kb": before.ru_maxrss,
                "rss_after_kb": after.ru_maxrss,
                "worker_rss_kb": children.ru_maxrss,
            }
        )
    )


def warm(path: Path) -> None:
    """Read the database file so that it starts in the page cache.

    This VM's balloon driver hands cached pages back to the host within
    seconds (about 1 GB per 20 s was seen), so without this a run reads part
    of a 4.5 GB database from disk, and how much depends on timing alone.
    """
    with path.open("rb") as handle:
        while handle.read(1 << 24):
            pass


def drop_page_cache() -> None:
    """Start a run with nothing cached, as on a machine with less RAM than data (root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_export(url: str, out: str, mode: str = "csv", cache: str = "warm") -> dict[str, Any]:
    if cache == "cold":
        drop_page_cache()
    else:
        warm(Path(url.removeprefix("sqlite:///")))
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"from benchmarks.bench_storage import export_child; "
        f"export_child({url!r}, {out!r}, {mode!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median rate of several runs, with each run's rate, CPU-time rate and load."""
    rates = [r["rows"] / r["seconds"] for r in runs]
    return {
        "rows_per_s": round(statistics.median(rates)),
        "runs_rows_per_s": [round(r) for r in rates],
        "runs_rows_per_cpu_s": [round(r["rows"] / r["cpu_seconds"]) for r in runs],
        "runs_load": [max(r["load"]) for r in runs],
        "jobs": runs[0]["jobs"],
        "peak_rss_mb": round(max(r["rss_after_kb"] for r in runs) / 1024, 1),
        "worker_peak_rss_mb": round(max(r["worker_rss_kb"] for r in runs) / 1024, 1),
        "rss_growth_mb": round(max(r["rss_after_kb"] - r["rss_before_kb"] for r in runs) / 1024, 1),
    }


def describe(label: str, s: dict[str, Any]) -> str:
    runs = ", ".join(
        f"{w:,} ({c:,}/CPU-s, load {lo:.1f})"
        for w, c, lo in zip(
            s["runs_rows_per_s"], s["runs_rows_per_cpu_s"], s["runs_load"], strict=True
        )
    )
    return (
        f"{label} (--jobs {s['jobs']}): median {s['rows_per_s']:,} rows/s; runs {runs}; "
        f"peak RSS {s['peak_rss_mb']:.0f} MB (+{s['rss_growth_mb']:.1f} MB during export), "
        f"workers {s['worker_peak_rss_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--saves", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each export")
    parser.add_argument(
        "--dir", default=None, help="where to put the database (default: a temp dir)"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the page cache before each run instead of reading the database into it "
        "(root; the modes are then also timed with a cold cache)",
    )
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results-storage.json"))
    args = parser.parse_args()

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-storage-"))
    path = workdir / "bench.db"
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        save_rate = bench_save(store, args.saves)
        print(f"save(): {save_rate:,.0f} measurements/s ({args.saves:,} saves)")
        seed_rate = seed(store, args.rows)
        print(f"bulk seed: {seed_rate:,.0f} rows/s")
        total = store.count()
    files = {mode: str(workdir / f"export-{mode}.csv") for mode in MODES}
    cache = "cold" if args.cold else "warm"
    run_export(url, files["csv"])  # a first run, not timed
    # This VM's CPUs are shared: one run can be 30 % off, so time several
    # (interleaved, so a busy minute hurts every mode alike) and keep the median.
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode in MODES:
            runs[mode].append(run_export(url, files[mode], mode, cache))
    generic_reported = run_export(url, str(workdir / "generic-reported.csv"), "generic-reported")
    identical = filecmp.cmp(files["csv"], files["generic"], shallow=False)
    identical_jobs = filecmp.cmp(files["reported"], files["reported-1"], shallow=False)
    identical_reported = filecmp.cmp(
        files["reported"], str(workdir / "generic-reported.csv"), shallow=False
    )
    stats = {mode: summary(r) for mode, r in runs.items()}
    rows = runs["reported"][0]["rows"]
    print(describe("probe export csv (reported-status columns)", stats["reported"]))
    print(describe("probe export csv, one process", stats["reported-1"]))
    print(describe("export_csv, no extra columns", stats["csv"]))
    print(describe("generic path, no extra columns", stats["generic"]))
    print(
        f"generic path with the reported columns: "
        f"{rows / generic_reported['seconds']:,.0f} rows/s; "
        f"identical output: {identical} (core), {identical_reported} (reported), "
        f"{identical_jobs} (one process and several)"
    )
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "rows": total,
        "save_per_s": round(save_rate),
        "seed_rows_per_s": round(seed_rate),
        "export_rows": rows,
        "export_runs": args.runs,
        "page_cache": cache,
        "export_reported": stats["reported"],
        "export_reported_one_process": stats["reported-1"],
        "export_plain": stats["csv"],
        "export_generic": stats["generic"],
        "export_generic_reported_rows_per_s": round(rows / generic_reported["seconds"]),
        "export_identical": identical,
        "export_reported_identical": identical_reported,
        "export_jobs_identical": identical_jobs,
        "database_mb": round(path.stat().st_size / 2**20),
        "csv_mb": round(Path(files["reported"]).stat().st_size / 2**20),
    }
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if args.dir is None:
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
