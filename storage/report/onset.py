"""When did blocking begin and end on a network, from its measurements alone?

Access during a block is often intermittent ("available for short cycles
depending on the ISP"), and a healthy network shows the odd failed check, so
neither the first blocked check nor the first successful one is a reliable
edge.  An edge is declared only when it is *sustained*:

* **onset**: a blocked check whose look-ahead window (the checks that start in
  the next ``window``, and at least ``min_checks`` of them, itself included)
  is at least ``onset_share`` blocked;
* **end** (while blocked): an accessible check whose look-ahead window is at
  least ``end_share`` accessible.

The end threshold is stricter than the onset one (hysteresis), so a block
with sporadic access is one episode, not many.  Only conclusive checks count
(blocked or accessible); down, offline and inconclusive checks are ignored.
Near the end of the data, where fewer than ``min_checks`` checks remain, no
edge is declared.  Once confirmed, an edge is *located* at the check within
one window either side that best splits that span into two segments with
different blocked rates (maximum likelihood), so a sporadic check near the
true edge does not shift it.  See docs/timeline-and-reports.md.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OnsetRule:
    window: dt.timedelta = dt.timedelta(hours=48)
    min_checks: int = 4
    onset_share: float = 0.6
    end_share: float = 0.8

    def __post_init__(self) -> None:
        if self.min_checks < 1 or self.window <= dt.timedelta(0):
            raise ValueError("window and min_checks must be positive")
        if not (0 < self.onset_share <= 1 and 0 < self.end_share <= 1):
            raise ValueError("shares must be in (0, 1]")


@dataclass(frozen=True)
class Episode:
    """One sustained blocking period on one series of checks."""

    onset: dt.datetime  # time of the first check of the sustained blocked run
    end: dt.datetime | None  # first check of sustained access; None: still blocked
    checks: int  # conclusive checks from onset up to (not including) end
    blocked: int

    @property
    def blocked_share(self) -> float:
        return self.blocked / self.checks if self.checks else 0.0


def detect_episodes(
    points: Iterable[tuple[dt.datetime, bool]], rule: OnsetRule | None = None
) -> tuple[Episode, ...]:
    """Blocking episodes in ``points`` = (time, blocked?) of conclusive checks."""
    return _Detector(sorted(points, key=lambda p: p[0]), rule or OnsetRule()).run()


class _Detector:
    def __init__(self, ordered: Sequence[tuple[dt.datetime, bool]], rule: OnsetRule) -> None:
        self.ordered = ordered
        self.rule = rule
        self.times = [t for t, _ in ordered]
        self.prefix = [0]
        for _, blocked in ordered:
            self.prefix.append(self.prefix[-1] + int(blocked))

    def after(self, i: int) -> float | None:
        """Blocked share of the look-ahead window of check ``i`` (None: too few checks)."""
        stop = max(
            bisect.bisect_left(self.times, self.times[i] + self.rule.window),
            i + self.rule.min_checks,
        )
        if stop > len(self.ordered):
            return None
        return (self.prefix[stop] - self.prefix[i]) / (stop - i)

    def locate(self, i: int, blocked: bool, floor: int) -> int:
        """The check near ``i`` that best splits "before" from "after".

        The sustained rule confirms *that* an edge happened around check ``i``;
        a sporadic check nearby can delay or advance that check.  So the edge
        is placed at the check (of the right verdict) within one window either
        side of ``i`` where splitting that span into two segments, each with
        its own blocked rate, fits the checks best (maximum likelihood; the
        classic single change point for a Bernoulli series).
        """
        lo = max(floor, bisect.bisect_left(self.times, self.times[i] - self.rule.window))
        hi = bisect.bisect_right(self.times, self.times[i] + self.rule.window)
        best, best_score = i, -math.inf
        for j in range(lo, hi):
            if self.ordered[j][1] != blocked:
                continue
            before = self.prefix[j] - self.prefix[lo]
            after = self.prefix[hi] - self.prefix[j]
            if (after / (hi - j) > before / (j - lo) if j > lo else True) != blocked:
                continue  # a step the wrong way round
            score = _loglik(before, j - lo) + _loglik(after, hi - j)
            if score > best_score:
                best, best_score = j, score
        return best

    def run(self) -> tuple[Episode, ...]:
        episodes: list[Episode] = []
        start: int | None = None
        floor = 0  # edges are never placed before the previous edge
        for i, (_, blocked) in enumerate(self.ordered):
            if start is None and blocked:
                share = self.after(i)
                if share is not None and share >= self.rule.onset_share:
                    start = self.locate(i, True, floor)
                    floor = start + 1
            elif start is not None and not blocked and i >= floor:
                share = self.after(i)
                if share is not None and 1 - share >= self.rule.end_share:
                    stop = self.locate(i, False, floor)
                    episodes.append(_episode(self.ordered, self.prefix, start, stop))
                    start, floor = None, stop + 1
        if start is not None:
            episodes.append(_episode(self.ordered, self.prefix, start, None))
        return tuple(episodes)


def _episode(
    ordered: Sequence[tuple[dt.datetime, bool]], prefix: Sequence[int], start: int, stop: int | None
) -> Episode:
    last = len(ordered) if stop is None else stop
    return Episode(
        onset=ordered[start][0],
        end=None if stop is None else ordered[stop][0],
        checks=last - start,
        blocked=prefix[last] - prefix[start],
    )


def _loglik(k: int, n: int) -> float:
    """Log-likelihood of ``k`` blocked out of ``n`` under their own Bernoulli rate."""
    if n == 0 or k in (0, n):
        return 0.0
    p = k / n
    return k * math.log(p) + (n - k) * math.log(1 - p)


def nearest(moment: dt.datetime, candidates: Sequence[dt.datetime]) -> dt.datetime | None:
    """The candidate closest in time to ``moment`` (earlier wins a tie)."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs(c - moment), c))
