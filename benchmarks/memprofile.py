"""Run a module under tracemalloc and write where its memory is at the peak.

Peak RSS says only that memory grew; this says which lines hold it.  A thread
takes a snapshot every second and keeps the one with the most traced memory;
at exit the top lines of that snapshot (and of the last one, what is still
held) are written as JSON, with the traced current and peak sizes.

    python -m benchmarks.memprofile OUT [-m] MODULE [ARGS...]
"""

from __future__ import annotations

import json
import runpy
import sys
import threading
import tracemalloc
from typing import Any

TOP = 25


def _top(snapshot: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    return [
        {"where": str(stat.traceback), "kib": round(stat.size / 1024, 1), "blocks": stat.count}
        for stat in stats.statistics("lineno")[:TOP]
    ]


def main() -> None:
    out, module, *args = sys.argv[1:]
    if module == "-m":
        module, *args = args
    sys.argv = [module, *args]
    tracemalloc.start()
    peak: list[Any] = [0, None]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            size = tracemalloc.get_traced_memory()[0]
            if size > peak[0]:
                peak[:] = [size, tracemalloc.take_snapshot()]

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        done.set()
        watcher.join()
        current, top = tracemalloc.get_traced_memory()
        report = {
            "traced_current_mib": round(current / 2**20, 2),
            "traced_peak_mib": round(top / 2**20, 2),
            "at_peak_snapshot_mib": round(peak[0] / 2**20, 2),
            "at_peak": _top(peak[1]) if peak[1] is not None else [],
            "at_exit": _top(tracemalloc.take_snapshot()),
        }
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
