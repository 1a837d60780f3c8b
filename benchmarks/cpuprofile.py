"""Run a module under cProfile timed by CPU time, not wall time.

``python -m cProfile`` charges a function for the wall time it spans, so on a
machine shared with other jobs a ``send()`` that was preempted looks costly.
Timing with ``time.process_time`` (user + sys of this process) shows where
the probe's own CPU goes.

    python -m benchmarks.cpuprofile OUT [-m] MODULE [ARGS...]
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, module, *args = sys.argv[1:]
    if module == "-m":
        module, *args = args
    sys.argv = [module, *args]
    profile = cProfile.Profile(time.process_time)
    try:
        profile.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
    finally:
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
