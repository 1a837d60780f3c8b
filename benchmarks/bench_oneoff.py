"""One-off latency: ``probe check x.com --json --no-store`` in the censorship lab.

What a user waits for when checking one domain by hand, and what it costs a
Raspberry Pi: for each run the check's own ``duration_ms`` (from the JSON),
the whole process's wall time (interpreter start, imports, TLS contexts,
rendering, teardown) and its CPU time (user + sys, from ``getrusage`` of the
child). Runs are repeated and medians reported, because the machine is shared.
``--scenario tcp_blackhole`` (or any other) times a blocked domain against the
``--timeout`` it was given. For scale, the bare interpreter and ``probe
--help`` are timed too (the ``--help`` budget is 0.3 s over the bare
interpreter). ``--profile FILE`` runs one extra check under cProfile
(timed by CPU time: :mod:`benchmarks.cpuprofile`).

Run as root inside a fresh network namespace (the lab needs it):
    unshare --net sh -c 'ip link set lo up && python -m benchmarks.bench_oneoff'
Writes benchmarks/results-oneoff.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.lab.scenarios import SCENARIOS, applied
from tests.lab.topology import running_lab

ROOT = Path(__file__).resolve().parent.parent
# An installed probe has its bytecode cached; a checkout run with
# PYTHONDONTWRITEBYTECODE would compile every module on every start.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``argv``; its wall time and CPU time (user + sys of the child and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=ENV)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, wall, cpu


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in runs)), 1)


def startup(runs: int) -> dict[str, float]:
    """Median wall (ms) of a bare interpreter and of ``probe --help``."""
    bare = [timed([sys.executable, "-c", "pass"])[1] for _ in range(runs)]
    timed([sys.executable, "-m", "probe", "--help"])  # untimed: writes the bytecode cache
    helps = [timed([sys.executable, "-m", "probe", "--help"])[1] for _ in range(runs)]
    return {
        "bare_interpreter_ms": round(statistics.median(bare) * 1000, 1),
        "probe_help_ms": round(statistics.median(helps) * 1000, 1),
    }


def measure(scenario: str, runs: int, timeout: float, profile: str | None) -> dict[str, Any]:
    spec = SCENARIOS[scenario]
    samples: list[dict[str, Any]] = []
    with running_lab("bo") as lab, applied(lab, scenario):
        argv = lab.probe_argv(spec.domains, timeout=timeout)
        timed(argv)  # untimed: warms the page cache and the lab's servers
        for _ in range(runs):
            done, wall, cpu = timed(argv)
            line = json.loads(done.stdout.splitlines()[0])
            samples.append(
                {
                    "duration_ms": line["duration_ms"],
                    "wall_ms": round(wall * 1000, 1),
                    "outside_ms": round(wall * 1000 - line["duration_ms"], 1),
                    "cpu_ms": round(cpu * 1000, 1),
                    "verdict": line["verdict"],
                    "blocking": line["blocking"],
                    "exit_status": done.returncode,
                }
            )
        if profile:
            at = argv.index(sys.executable) + 1
            subprocess.run(
                [*argv[:at], "-m", "benchmarks.cpuprofile", profile, *argv[at:]],
                capture_output=True,
                timeout=120,
                env=ENV,
                check=False,
            )
    return {
        "scenario": scenario,
        "domains": list(spec.domains),
        "timeout_s": timeout,
        "runs": runs,
        "median_duration_ms": median_of(samples, "duration_ms"),
        "median_wall_ms": median_of(samples, "wall_ms"),
        "median_outside_ms": median_of(samples, "outside_ms"),
        "median_cpu_ms": median_of(samples, "cpu_ms"),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument(
        "--scenario", action="append", help="lab scenario (repeatable; default clean)"
    )
    parser.add_argument("--profile", help="write a cProfile of one extra (first scenario) run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-oneoff.json"))
    args = parser.parse_args()

    # The machine is shared: the load average says how far the figures can be trusted.
    result: dict[str, Any] = {"load_average_start": os.getloadavg()}
    result |= {"startup": startup(args.runs), "checks": []}
    print(json.dumps(result["startup"]), flush=True)
    for i, scenario in enumerate(args.scenario or ["clean"]):
        measured = measure(scenario, args.runs, args.timeout, args.profile if i == 0 else None)
        result["checks"].append(measured)
        summary = {k: v for k, v in measured.items() if k != "samples"}
        print(json.dumps(summary), flush=True)
    result["load_average_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
