"""Per-key token buckets: uploads per vantage, failed authentications per address.

Why not a library (``limits``, ``slowapi``): their value is shared storage
(Redis) for several processes, and a collector deliberately keeps no shared
in-process state that matters; a per-process bucket bounds what one client
can make one process do, which is the point here (with N processes behind a
balancer a client gets at most N times the rate; see docs/deploy.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

MAX_KEYS = 10_000  # forget the idlest buckets beyond this many (addresses are cheap)


class RateLimiter:
    """``rate`` events per second per key, bursts of up to ``burst``."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, updated)
        self._lock = threading.Lock()

    def acquire(self, key: Hashable) -> float:
        """Take one token for ``key``: 0.0 when allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - updated) * self.rate)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return 0.0
            self._store(key, tokens, now)
            return (1.0 - tokens) / self.rate

    def _store(self, key: Hashable, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_KEYS:  # a full bucket is the same as a forgotten one
            items = self._buckets.items()
            full = [k for k, (t, u) in items if t + (now - u) * self.rate >= self.burst]
            for k in full[: len(self._buckets) - MAX_KEYS // 2]:
                del self._buckets[k]
            while len(self._buckets) > MAX_KEYS:
                del self._buckets[next(iter(self._buckets))]


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
