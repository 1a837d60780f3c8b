"""The daemon's uploads: after each check, the backlog goes to the collector.

Why tenacity: exponential backoff with jitter, a retry predicate and an
interruptible sleep are a solved problem; tenacity is maintained, small,
pure Python and already async-aware.  Retryable failures (the collector
unreachable, busy or without its database: a censor blocking it looks the
same) back off from ``INITIAL_WAIT`` up to ``MAX_WAIT``, jittered so that many
probes do not return in step; checks go on meanwhile and only add to the
backlog.  A refused token or a rejected batch is not retried: it is logged
and recorded in the state, and tried again after the next check, because
only an operator can fix it.

The upload itself is blocking (httpx, SQLAlchemy) and runs in a worker
thread, between batches of which it looks at ``stopping`` so that a shutdown
does not wait for a whole backlog.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from probe.errors import ProbeError
from schedules import state as st

if TYPE_CHECKING:
    from storage.store import Store

log = logging.getLogger(__name__)

INITIAL_WAIT = 5.0  # seconds before the first retry
MAX_WAIT = 15 * 60.0  # backoff cap: at most one try per 15 minutes while blocked
JITTER = 5.0
SETTLE = 2.0  # wait this long after a check, so checks finishing together upload together


class _Stopped(Exception):
    pass


@dataclass
class Uploader:
    """Uploads ``store``'s backlog to ``url`` whenever :meth:`kick` says there may be one."""

    store: Store
    url: str
    token: str
    state: st.StateFile
    batch_size: int = 500
    vantage: str | None = None  # this probe's name: a token of another vantage is refused
    ca_bundle: str | None = None  # CAs trusted besides the usual ones
    initial_wait: float = INITIAL_WAIT
    max_wait: float = MAX_WAIT
    settle: float = SETTLE
    stopping: threading.Event = field(default_factory=threading.Event)
    _wanted: asyncio.Event = field(default_factory=asyncio.Event)

    def kick(self) -> None:
        """A measurement was stored: upload soon (coalesced with other kicks)."""
        self._wanted.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Upload after every kick until ``stop`` is set."""
        self._wanted.set()  # a backlog left by the last run goes first
        stopper = asyncio.create_task(self._stop_on(stop))
        try:
            while not stop.is_set():
                await self._wait_for_kick(stop)
                if stop.is_set():
                    return
                await self._sleep(self.settle, stop)
                self._wanted.clear()
                await self._upload_with_retries(stop)
        except _Stopped:
            return
        finally:
            stopper.cancel()

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopping.set()

    async def _wait_for_kick(self, stop: asyncio.Event) -> None:
        kicked = asyncio.create_task(self._wanted.wait())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({kicked, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            kicked.cancel()
            stopped.cancel()

    @staticmethod
    async def _sleep(seconds: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            return
        raise _Stopped

    async def _upload_with_retries(self, stop: asyncio.Event) -> None:
        from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

        from collectors.upload import UploadError

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, UploadError) and exc.retryable

        def before_sleep(retry_state: object) -> None:
            outcome = getattr(retry_state, "outcome", None)
            upcoming = getattr(getattr(retry_state, "next_action", None), "sleep", 0.0)
            exc = outcome.exception() if outcome is not None else None
            log.warning("upload failed: %s; retrying in %.0f s", exc, upcoming)

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            wait=wait_exponential_jitter(
                initial=self.initial_wait, max=self.max_wait, jitter=JITTER
            ),
            sleep=lambda seconds: self._sleep(seconds, stop),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._attempt()
        except ProbeError as exc:  # not retryable (or the local database failed)
            log.error("upload failed: %s; trying again after the next check", exc)

    async def _attempt(self) -> None:
        from collectors.upload import upload

        try:
            result = await asyncio.to_thread(
                upload, self.store, self.url, self.token,
                batch_size=self.batch_size, stopping=self.stopping, vantage=self.vantage,
                ca_bundle=self.ca_bundle,
            )  # fmt: skip
        except ProbeError as exc:
            self.state.update(upload_last_error=str(exc), upload_last_attempt=_now())
            raise
        now = _now()
        self.state.update(upload_last_error=None, upload_last_attempt=now, upload_last_success=now)
        if result.sent:
            log.info(
                "uploaded %d measurements to %s (%d new, %d already there)",
                result.sent, self.url, result.added, result.duplicates,
            )  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
