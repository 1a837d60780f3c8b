"""Scale benchmark: a whole Citizen Lab test list through ``probe check --list``
inside the censorship lab.

The lab is started with its catch-all site for the list's domains: the
internet resolver answers every list name with the catch-all addresses, whose
nginx serves any host over HTTP and HTTPS with a certificate from the lab CA
covering them all. So every domain is measured in full (DNS through both
resolvers, TCP, TLS with the target and the control SNI, HTTPS and plaintext
HTTP on two addresses), as on a real network where the sites exist; with
``--scenario sni_reset`` the X names in the list (if any) are blocked.

What is measured is the probe's own cost per domain at the given concurrency:
domains/s, wall time, the CPU time and peak RSS of the probe process, and the
CPU the lab's servers spent answering it. ``--profile FILE`` runs the probe
under cProfile (slower) and writes the profile there.

Run as root inside a fresh network namespace (the lab needs it):
    unshare --net sh -c 'ip link set lo up && python -m benchmarks.bench_list'
Writes benchmarks/results-list.json (``--out``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from probe.targets import read_test_list
from tests.lab.scenarios import applied
from tests.lab.topology import Lab, running_lab

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIST = ROOT.parent / "shared" / "test-lists" / "pk.csv"


def _server_cpu_s(lab: Lab) -> float:
    """utime + stime of the lab's server processes and their children (nginx workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    pids = [p.popen.pid for p in lab.processes.values()]
    for pid in pids:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            pids += [int(c) for c in children.read_text().split()]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / tick


def measure(
    list_path: str, scenario: str, concurrency: int, timeout: float, profile: str | None
) -> dict[str, Any]:
    domains = [t.domain for t in read_test_list(list_path)]
    with running_lab("rb", catch_all=domains) as lab, applied(lab, scenario):
        argv = lab.probe_argv([], timeout=timeout)
        argv += ["--list", list_path, "--concurrency", str(concurrency)]
        if profile:
            at = argv.index(sys.executable) + 1
            argv[at:at] = ["-m", "cProfile", "-o", profile]
        servers_before = _server_cpu_s(lab)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        servers = _server_cpu_s(lab) - servers_before

    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    durations = sorted(line["duration_ms"] for line in lines)
    return {
        "list": Path(list_path).name,
        "scenario": scenario,
        "domains": len(lines),
        "domains_in_list": len(domains),
        "concurrency": concurrency,
        "timeout_s": timeout,
        "wall_s": round(wall, 2),
        "domains_per_s": round(len(lines) / wall, 1) if wall else None,
        "median_domain_ms": durations[len(durations) // 2] if durations else None,
        "slowest_domain_ms": durations[-1] if durations else None,
        "probe_user_s": round(after.ru_utime - before.ru_utime, 2),
        "probe_sys_s": round(after.ru_stime - before.ru_stime, 2),
        "probe_cpu_s": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
        ),
        "servers_cpu_s": round(servers, 2),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "verdicts": dict(collections.Counter(line["verdict"] for line in lines)),
        "blocked": sorted(line["domain"] for line in lines if line["verdict"] == "blocked"),
        "exit_status": done.returncode,
        "stderr_tail": done.stderr.strip().splitlines()[-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--list", action="append", help="test-list CSV (repeatable)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument("--scenario", default="sni_reset")
    parser.add_argument("--profile", help="write a cProfile of the (first) probe run here")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-list.json"))
    args = parser.parse_args()

    results = []
    for i, path in enumerate(args.list or [str(DEFAULT_LIST)]):
        profile = args.profile if i == 0 else None
        result = measure(path, args.scenario, args.concurrency, args.timeout, profile)
        results.append(result)
        for key, value in result.items():
            print(f"{key:>18}: {value}", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
