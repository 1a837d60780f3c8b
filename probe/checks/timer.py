"""``within(delay)``: ``asyncio.timeout`` as a plain (synchronous) context manager.

Every step of a check is bounded (a connect, a handshake, an exchange, a DNS
query, a close), so a list run enters a few dozen of these per domain.
``asyncio.timeout`` costs two coroutines and three running-loop lookups (each a
``getpid`` system call on Python 3.11) per use: about 11 µs here, several times
that on a Raspberry Pi.  This one does the same with one lookup and no
coroutine.  The semantics are asyncio's: when the delay passes, the current task
is cancelled, and the block raises ``TimeoutError`` if that cancellation is the
only one pending; a cancellation from elsewhere passes through unchanged.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class within:
    """Cancel the current task after ``delay`` seconds (now, if not positive);
    the cancellation leaves the block as ``TimeoutError``."""

    __slots__ = ("_delay", "_expired", "_handle", "_task")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._expired = False

    def __enter__(self) -> within:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("within() must be used inside a task")
        self._task = task
        loop = task.get_loop()
        self._handle = loop.call_at(loop.time() + self._delay, self._expire)
        return self

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._handle.cancel()
        if self._expired and self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
            raise TimeoutError  # chained to the CancelledError, as asyncio.timeout does
