"""The tally line that ends a list run: after hundreds of per-domain lines, how
many domains were checked, how many of each verdict, how many list lines could
not be checked, and how long it took, in one line on stderr (so ``--json``
output on stdout stays one object per line)."""

from __future__ import annotations

import sys
import time
from collections import Counter

from probe.verdict import Status


class ListTally:
    """Counts verdicts as they come; :meth:`line` words them, interrupted or not."""

    def __init__(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped
        self.started = time.monotonic()
        self.counts: Counter[str] = Counter()

    def add(self, status: str) -> None:
        self.counts[status] += 1

    def line(self, *, interrupted: bool = False) -> str:
        checked = sum(self.counts.values())
        of = f" of {self.total}" if checked != self.total else ""
        verdicts = ", ".join(f"{self.counts[s]} {s}" for s in Status if self.counts[s])
        return (
            f"checked {checked}{of} domain(s) in {_duration(time.monotonic() - self.started)}"
            f"{' (interrupted)' if interrupted else ''}: {verdicts or 'no verdict'}; "
            f"{self.skipped} list line(s) skipped"
        )

    def print(self, *, interrupted: bool = False) -> None:
        print(self.line(interrupted=interrupted), file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
