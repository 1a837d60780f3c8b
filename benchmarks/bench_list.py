"""Scale benchmark: a whole Citizen Lab test list through ``probe check --list``
inside the censorship lab.

The lab is started with its catch-all site for the list's domains: the
internet resolver answers every list name with the catch-all addresses, whose
nginx serves any host over HTTP and HTTPS with a certificate from the lab CA
covering them all. So every domain is measured in full (DNS through both
resolvers, TCP, TLS with the target and the control SNI, HTTPS and plaintext
HTTP on two addresses), as on a real network where the sites exist; with
``--scenario sni_reset`` the X names in the list (if any) are blocked.

``--domains N --timeouts 0.1 --resets 0.1`` runs the first N distinct
domains of the lists given, with a mix of blocking: every tenth domain
(shares as given) resolves to addresses the isp blackholes (the check waits
out its ``--timeout``) and as many to addresses whose SYNs it resets
(:func:`tests.lab.scenarios.blocked_names`); ``--store`` stores the results
in a fresh SQLite database instead of ``--no-store``, to see that memory stays
flat in the list's length either way.

What is measured is the probe's own cost per domain at the given concurrency:
domains/s, wall time, the CPU time and peak RSS of the probe process, and the
CPU the lab's servers spent answering it.  The CPU per domain is the run's
total over its N domains (process start-up included: the figure issue #16's
target is judged on); when ``--domains`` gives runs of different lengths, the
marginal cost is printed and stored beside it (``marginal``: the longest run
minus the shortest, over the difference in domains; also in instructions under
``--callgrind``).  ``--profile FILE`` runs the probe
under cProfile timed by CPU time (:mod:`benchmarks.cpuprofile`; slower) and
writes the profile there; ``--sample FILE`` records py-spy's samples instead
(``pip install py-spy``: no per-call overhead, so shares are closer to the
truth); ``--memory FILE`` writes the lines holding the most memory at the
peak (:mod:`benchmarks.memprofile`, tracemalloc).

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
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_oneoff import ENV
from probe.targets import read_test_list
from tests.lab.scenarios import applied, blocked_names
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


def _instructions(path: str) -> int | None:
    """The instruction count a callgrind output file totals."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return None


def mix(domains: Sequence[str], timeouts: float, resets: float) -> tuple[list[str], list[str]]:
    """Spread the blocked names evenly over the list: (timeouts, resets)."""
    blackholed, refused = [], []
    for i, name in enumerate(domains):
        slot = (i * 7919) % 1000 / 1000  # a stride through the list, not its head
        if slot < timeouts:
            blackholed.append(name)
        elif slot < timeouts + resets:
            refused.append(name)
    return blackholed, refused


def measure(
    list_paths: Sequence[str],
    scenario: str,
    concurrency: int,
    timeout: float,
    profile: str | None,
    *,
    sample: str | None = None,
    callgrind: str | None = None,
    memory: str | None = None,
    count: int | None = None,
    timeouts: float = 0.0,
    resets: float = 0.0,
    store: bool = False,
) -> dict[str, Any]:
    targets = {t.domain: t for path in list_paths for t in read_test_list(path)}
    domains = list(targets)[:count] if count else list(targets)
    blackholed, refused = mix(domains, timeouts, resets)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_lab("rb", catch_all=domains) as lab,
        applied(lab, scenario),
        blocked_names(lab, blackholed, refused),
    ):
        listing = Path(tmp) / "list.csv"
        listing.write_text("url\n" + "".join(f"https://{d}/\n" for d in domains))
        Path(tmp).chmod(0o755)
        argv = lab.probe_argv(domains[:0], timeout=timeout)
        argv += ["--list", str(listing), "--concurrency", str(concurrency)]
        if store:
            argv.remove("--no-store")
            argv += ["--db", str(Path(tmp) / "probe.db")]
        if profile:
            at = argv.index(sys.executable) + 1
            argv[at:at] = ["-m", "benchmarks.cpuprofile", profile]
        if memory:
            at = argv.index(sys.executable) + 1
            argv[at:at] = ["-m", "benchmarks.memprofile", memory]
        if callgrind:
            at = argv.index(sys.executable)
            argv[at:at] = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}"]
        if sample:
            at = argv.index(sys.executable)
            spy = str(Path(sys.executable).parent / "py-spy")
            argv[at:at] = [spy, "record", "--format", "raw", "--rate", "250", "-o", sample, "--"]
        subprocess.run(  # untimed: writes the bytecode cache, as an installed probe has one
            [sys.executable, "-m", "compileall", "-q", str(ROOT / "probe")], env=ENV, check=True
        )  # (all of it: a module imported lazily would be compiled inside the first run)
        servers_before = _server_cpu_s(lab)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=3600, check=False, env=ENV
        )
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        servers = _server_cpu_s(lab) - servers_before

    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    durations = sorted(line["duration_ms"] for line in lines)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    verdicts = {line["domain"]: line for line in lines}
    return {
        "list": "+".join(Path(p).name for p in list_paths),
        "scenario": scenario,
        "domains": len(lines),
        "domains_in_list": len(domains),
        "blackholed": len(blackholed),
        "reset": len(refused),
        "stored": store,
        "concurrency": concurrency,
        "timeout_s": timeout,
        "wall_s": round(wall, 2),
        "domains_per_s": round(len(lines) / wall, 1) if wall else None,
        "median_domain_ms": durations[len(durations) // 2] if durations else None,
        "slowest_domain_ms": durations[-1] if durations else None,
        "probe_user_s": round(after.ru_utime - before.ru_utime, 2),
        "probe_sys_s": round(after.ru_stime - before.ru_stime, 2),
        "probe_cpu_s": round(cpu, 2),
        "probe_cpu_ms_per_domain": round(cpu * 1000 / len(lines), 1) if lines else None,
        "probe_minor_faults": after.ru_minflt - before.ru_minflt,
        "servers_cpu_s": round(servers, 2),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "instructions": _instructions(callgrind) if callgrind else None,
        "verdicts": dict(collections.Counter(line["verdict"] for line in lines)),
        "blocked": sorted(line["domain"] for line in lines if line["verdict"] == "blocked")[:20],
        "mix_verdicts": {
            "blackholed": dict(
                collections.Counter(
                    "/".join(verdicts[d]["blocking"]) for d in blackholed if d in verdicts
                )
            ),
            "reset": dict(
                collections.Counter(
                    "/".join(verdicts[d]["blocking"]) for d in refused if d in verdicts
                )
            ),
        },
        "exit_status": done.returncode,
        "stderr_tail": done.stderr.strip().splitlines()[-3:],
    }


def marginal(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What one more domain costs: the CPU (and instructions, under callgrind) of
    the longest run minus the shortest, over the difference in domains.

    The total over N (``probe_cpu_ms_per_domain``, what issue #16's target is
    judged on) spreads the process's start-up over the list; this figure leaves
    it out.  None unless two runs measured different numbers of domains.
    """
    measured = [r for r in results if r["domains"]]
    if not measured:
        return None
    short = min(measured, key=lambda r: r["domains"])
    long = max(measured, key=lambda r: r["domains"])
    extra = long["domains"] - short["domains"]
    if extra <= 0:
        return None
    figure: dict[str, Any] = {
        "domains": [short["domains"], long["domains"]],
        "probe_cpu_ms_per_domain": round(
            (long["probe_cpu_s"] - short["probe_cpu_s"]) * 1000 / extra, 1
        ),
    }
    if long["instructions"] is not None and short["instructions"] is not None:
        figure["instructions_per_domain"] = round(
            (long["instructions"] - short["instructions"]) / extra
        )
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--list", action="append", help="test-list CSV (repeatable)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument("--scenario", default="sni_reset")
    parser.add_argument("--profile", help="write a cProfile of the (first) probe run here")
    parser.add_argument(
        "--sample",
        help="write py-spy's samples (raw, collapsed stacks) of the (first) probe run here:"
        " a profile without cProfile's overhead on Python calls",
    )
    parser.add_argument(
        "--callgrind",
        help="run the probe under valgrind's callgrind, writing its output to FILE.N (run N;"
        " give a long --timeout: the probe runs ~50x slower): instructions, the steady count",
    )
    parser.add_argument(
        "--memory",
        help="write where the probe's memory is at its peak (tracemalloc) here (the first run)",
    )
    parser.add_argument(
        "--domains", type=int, nargs="*", help="runs over the first N domains of all lists"
    )
    parser.add_argument("--timeouts", type=float, default=0.0, help="share of names blackholed")
    parser.add_argument("--resets", type=float, default=0.0, help="share of names reset")
    parser.add_argument("--store", action="store_true", help="store into a fresh SQLite file")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-list.json"))
    args = parser.parse_args()

    lists = args.list or [str(DEFAULT_LIST)]
    runs: list[tuple[list[str], int | None]] = (
        [(lists, n) for n in args.domains] if args.domains else [([p], None) for p in lists]
    )
    results = []
    for i, (paths, count) in enumerate(runs):
        profile = args.profile if i == 0 else None
        result = measure(
            paths,
            args.scenario,
            args.concurrency,
            args.timeout,
            profile,
            sample=args.sample if i == 0 else None,
            callgrind=f"{args.callgrind}.{i}" if args.callgrind else None,
            memory=args.memory if i == 0 else None,
            count=count,
            timeouts=args.timeouts,
            resets=args.resets,
            store=args.store,
        )
        results.append(result)
        for key, value in result.items():
            print(f"{key:>18}: {value}", flush=True)
    extra = marginal(results)
    if extra is not None:  # beside each run's total over N, which it does not replace
        for result in results:
            result["marginal"] = extra
        print(f"{'marginal':>18}: {extra}", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
