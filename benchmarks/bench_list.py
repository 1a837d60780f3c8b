"""Scale benchmark: a whole Citizen Lab test list through ``probe check --list``
inside the censorship lab.

The lab's resolvers know only the lab names, so most list entries get
NXDOMAIN from both resolvers (verdict ``down``) while the X names that the
list contains are measured in full; with ``--scenario sni_reset`` those are
blocked. What is measured is the probe's own cost per domain at the given
concurrency: domains/s, wall time, and the peak RSS of the probe process.

Run as root inside a fresh network namespace (the lab needs it):
    unshare --net sh -c 'ip link set lo up && python -m benchmarks.bench_list'
Writes benchmarks/results-list.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import subprocess
import time
from pathlib import Path

from tests.lab.scenarios import applied
from tests.lab.topology import running_lab

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIST = ROOT.parent / "shared" / "test-lists" / "pk.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", default=str(DEFAULT_LIST), help="test-list CSV")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument("--scenario", default="sni_reset")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-list.json"))
    args = parser.parse_args()

    with running_lab("rb") as lab, applied(lab, args.scenario):
        argv = lab.probe_argv([], timeout=args.timeout)
        argv += ["--list", args.list, "--concurrency", str(args.concurrency)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)

    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    verdicts = collections.Counter(line["verdict"] for line in lines)
    slowest = max((line["duration_ms"] for line in lines), default=0.0)
    result = {
        "list": Path(args.list).name,
        "scenario": args.scenario,
        "domains": len(lines),
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
        "wall_s": round(wall, 2),
        "domains_per_s": round(len(lines) / wall, 1) if wall else None,
        "slowest_domain_ms": slowest,
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "verdicts": dict(verdicts),
        "exit_status": done.returncode,
        "stderr_tail": done.stderr.strip().splitlines()[-3:],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
