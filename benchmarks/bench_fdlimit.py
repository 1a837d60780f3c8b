"""The issue's file-descriptor run at full size: ``probe check --list`` of 2,000
domains at ``--concurrency 64`` under ``ulimit -n 256``, inside the lab.

The list is the one of ``tests/lab/test_fdlimit.py`` with more names that do
not exist (150 served by the catch-all site, the rest NXDOMAIN from both
resolvers).  The probe lowers its concurrency to what the limit holds (5), so
the run takes minutes, not seconds: a benchmark, not a test.  Counted: every
domain printed once and stored once; figures: wall time and domains/s.

Run as root inside a fresh network namespace (the lab needs it):
    unshare --net sh -c 'ip link set lo up && python -m benchmarks.bench_fdlimit'
Writes benchmarks/results-fdlimit.json (``--out``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from tests.lab.test_fdlimit import GONE_ZONE, LIMIT, SERVED, write_list
from tests.lab.topology import running_lab

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--domains", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-fdlimit.json"))
    args = parser.parse_args()
    gone = tuple(f"gone{i:05d}.{GONE_ZONE}" for i in range(args.domains - len(SERVED)))
    domains = SERVED + gone
    with tempfile.TemporaryDirectory() as tmp, running_lab("fdb", catch_all=SERVED) as lab:
        lab.start_internet_resolver([f"--address=/{GONE_ZONE}/"])
        listed = write_list(Path(tmp) / "list.csv", domains)
        db = Path(tmp) / "probe.db"
        argv = ["prlimit", f"--nofile={LIMIT}:{LIMIT}", "--", *lab.probe_argv((), timeout=4)]
        argv.remove("--no-store")
        argv += ["--list", str(listed), "--concurrency", "64", "--db", str(db)]
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - start
        printed = collections.Counter(
            json.loads(line)["domain"] for line in done.stdout.splitlines() if line.strip()
        )
        with sqlite3.connect(db) as conn:
            stored = collections.Counter(
                d for (d,) in conn.execute("SELECT domain FROM measurements")
            )
    expected = collections.Counter(domains)
    result = {
        "domains": len(domains),
        "ulimit_n": LIMIT,
        "exit_status": done.returncode,
        "wall_s": round(wall, 1),
        "domains_per_s": round(len(domains) / wall, 1),
        "printed_once": printed == expected,
        "stored_once": stored == expected,
        "warning": [line for line in done.stderr.splitlines() if "file descriptors" in line],
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not (result["printed_once"] and result["stored_once"]):
        raise SystemExit(f"lost or repeated results:\n{done.stderr[-2000:]}")


if __name__ == "__main__":
    main()
