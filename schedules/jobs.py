"""What the scheduler runs: one target's check, and the retention clean-up.

A check job measures one target, stores the measurement and updates the
metrics and the daemon state.  It never raises: a network failure is data (in
the observations), and a storage or usage failure is logged, counted and
recorded in the state, so one bad run does not stop the schedule.

A check cut short by a shutdown stores nothing (half a check would be a
fabricated measurement); it is logged, counted, recorded as ``interrupted`` in
the state, and its target is due again at once, so the next start re-runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from probe.errors import ProbeError, StorageError
from probe.observations import rfc3339
from probe.verdict import Status
from schedules import state as st

if TYPE_CHECKING:
    from probe.check import CheckOptions
    from probe.observations import DomainObservations
    from probe.targets import Target
    from probe.verdict import Verdict
    from schedules.metrics import Metrics
    from schedules.spool import Spool
    from schedules.tracing import Tracer
    from storage.records import Vantage
    from storage.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Runner:
    """Everything the check jobs of one daemon share.

    ``semaphore`` bounds how many targets are measured at once (a Pi has
    little CPU and one uplink); ``inflight`` lets the daemon wait for, then
    cancel, running checks on shutdown; ``stopping`` keeps queued jobs from
    starting once a shutdown began.
    """

    store: Store
    vantage: Vantage
    options: CheckOptions
    targets: dict[str, Target]
    state: st.StateFile
    metrics: Metrics | None = None
    spool: Spool | None = None  # where measurements go while the database refuses them
    after_check: Callable[[], None] | None = None  # e.g. wake the uploader
    tracer: Tracer | None = None  # traces a target its check found blocked ([trace])
    concurrency: int = 2
    stopping: bool = False
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    semaphore: asyncio.Semaphore = field(init=False)
    clock: Callable[[], dt.datetime] = utcnow

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.concurrency)


async def check_job(runner: Runner, domain: str) -> None:
    """Check ``domain`` once and record the outcome (APScheduler job function)."""
    task = asyncio.current_task()
    assert task is not None
    runner.inflight.add(task)  # type: ignore[arg-type]
    try:
        async with runner.semaphore:
            if not runner.stopping:
                await _measure(runner, domain)  # records its own interruption
                if runner.after_check is not None:
                    runner.after_check()
                return
    except asyncio.CancelledError:  # cancelled while queued for the semaphore
        pass
    finally:
        runner.inflight.discard(task)  # type: ignore[arg-type]
    log.info("%s: check not started, shutting down; due again at start", domain)
    runner.state.update_target(domain, next_run=runner.clock())


def _save(runner: Runner, obs: DomainObservations, verdict: Verdict, measurement: str) -> str:
    """Store one measurement (raises StorageError), then import any spooled ones.

    This measurement first: a spool that cannot be imported (a damaged file,
    a drain in another thread) must never cost the one in hand.
    """
    runner.store.save(obs, verdict, runner.vantage, measurement)
    if runner.spool is not None and runner.spool.pending():
        try:
            added = runner.spool.drain(runner.store)
        except (StorageError, OSError) as exc:
            log.error("could not store the spooled measurements yet (%s); kept in %s",
                      exc, runner.spool.path)  # fmt: skip
        else:
            if added:
                log.info("stored %d spooled measurements from %s", added, runner.spool.path)
    return measurement


async def _in_daemon_thread(func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in a daemon thread.

    Unlike ``asyncio.to_thread`` the process does not wait for it at exit: a
    save blocked on a locked database (up to its busy timeout) must not hold
    a SIGTERM up; the measurement is spooled under the same id instead.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = func(*args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="probe-save", daemon=True).start()
    return await future


def _spooled_at_shutdown(
    runner: Runner, domain: str, obs: DomainObservations, verdict: Verdict, measurement: str
) -> None:
    """Shutdown came while the save waited on the database: spool the
    measurement under the same id (if the save commits after all, importing
    it is a no-op), so stopping never waits for the busy timeout."""
    where = _keep(runner, obs, verdict, measurement)
    log.warning("%s: shutdown while saving the measurement; %s", domain, where)
    old = runner.state.target(domain)
    runner.state.update_target(
        domain, last_finished=runner.clock(), last_outcome=st.INTERRUPTED,
        interrupted=old.interrupted + 1, next_run=runner.clock(),
    )  # fmt: skip


def _keep(runner: Runner, obs: DomainObservations, verdict: Verdict, measurement: str) -> str:
    """Spool a measurement the database did not take; where it is now, for the log."""
    if runner.spool is None:
        return "NOT stored anywhere"
    try:
        runner.spool.add(obs, verdict, runner.vantage, measurement)
    except OSError as exc:
        return (
            f"spool {runner.spool.path} not writable ({exc.strerror}): "
            f"kept as {measurement} in memory ({runner.spool.in_memory} waiting) until "
            "the database or the spool is back, LOST if the daemon stops first"
        )
    return f"kept as {measurement} in {runner.spool.path} until the database is back"


def _unstored(
    runner: Runner,
    domain: str,
    obs: DomainObservations,
    verdict: Verdict,
    measurement: str,
    exc: StorageError,
) -> None:
    """The database refused a measurement: keep it in the spool, and say so loudly."""
    where = _keep(runner, obs, verdict, measurement)
    log.error("%s: database refused the measurement (%s); %s; verdict was %s",
              domain, exc, where, verdict.status)  # fmt: skip
    _failed(runner, domain, "storage", str(exc))


async def _measure(runner: Runner, domain: str) -> None:
    from probe.check import check_targets

    target = runner.targets[domain]
    started = runner.clock()
    runner.state.update_target(domain, last_started=started)
    log.debug("%s: check started", domain)
    saved = 0
    blocked: str | None = None  # the stored measurement that found the target blocked
    try:
        async for obs, verdict in check_targets([target], runner.options):
            measurement = str(uuid.uuid4())
            try:
                # In a thread: a locked SQLite file may block for its whole busy
                # timeout, and the event loop is timing other checks meanwhile.
                await _in_daemon_thread(_save, runner, obs, verdict, measurement)
            except StorageError as exc:
                _unstored(runner, domain, obs, verdict, measurement, exc)
                return
            except asyncio.CancelledError:
                _spooled_at_shutdown(runner, domain, obs, verdict, measurement)
                return
            saved += 1
            blocking = ",".join(verdict.blocking)
            log.info(
                "%s: %s%s in %.1f s (measurement %s)",
                domain,
                verdict.status,
                f" ({blocking})" if blocking else "",
                obs.duration_ms / 1000,
                measurement,
            )
            old = runner.state.target(domain)
            runner.state.update_target(
                domain,
                last_finished=runner.clock(),
                last_outcome=st.OK,
                last_status=str(verdict.status),
                last_measurement=measurement,
                last_error=None,
                runs=old.runs + 1,
            )
            if runner.metrics is not None:
                _observe(runner.metrics, obs, verdict)
            if verdict.status == Status.BLOCKED:
                blocked = measurement
    except asyncio.CancelledError:
        log.warning(
            "%s: check started %s interrupted by shutdown; nothing stored, due again at start",
            domain,
            started.isoformat(timespec="seconds"),
        )
        old = runner.state.target(domain)
        runner.state.update_target(
            domain,
            last_finished=runner.clock(),
            last_outcome=st.INTERRUPTED,
            interrupted=old.interrupted + 1,
            next_run=runner.clock(),
        )
        if runner.metrics is not None:
            runner.metrics.interrupted(domain)
        # Not re-raised: this task is the job's own top-level task, and
        # APScheduler would log a CancelledError as a crash with a traceback.
        return
    except ProbeError as exc:
        log.error("%s: check failed: %s", domain, exc)
        _failed(runner, domain, "usage", str(exc))
        return
    except Exception as exc:  # a bug: keep the daemon alive, keep the trace in the log
        log.exception("%s: internal error in check", domain)
        _failed(runner, domain, "internal", f"{type(exc).__name__}: {exc}")
        return
    if saved == 0:
        _failed(runner, domain, "internal", "the check yielded no measurement")
    if blocked is not None and runner.tracer is not None:
        try:
            await runner.tracer.after_blocked(
                runner.store, runner.vantage, domain, blocked, runner.clock()
            )
        except asyncio.CancelledError:  # shutdown: the measurement is stored already
            log.info("%s: trace interrupted by shutdown", domain)


def _observe(metrics: Metrics, obs: DomainObservations, verdict: Verdict) -> None:
    """Metrics are a view: a bug there must not turn a stored measurement into a failure."""
    try:
        metrics.observe(obs, verdict)
    except Exception:
        log.exception("%s: could not update the metrics", obs.domain)


def _failed(runner: Runner, domain: str, kind: str, reason: str) -> None:
    old = runner.state.target(domain)
    runner.state.update_target(
        domain,
        last_finished=runner.clock(),
        last_outcome=st.FAILED,
        last_error=reason,
        failed=old.failed + 1,
    )
    if runner.metrics is not None:
        runner.metrics.error(domain, kind)


# ----------------------------------------------------------------- retention


def retention_job(store: Store, retention_days: int) -> int:
    """Delete measurements older than ``retention_days`` (0 = keep forever).

    Returns how many were deleted.  The daemon runs it in a worker thread: a
    big delete on an SD card may take seconds and must not stall the checks.
    """
    if retention_days <= 0:
        return 0
    cutoff = utcnow() - dt.timedelta(days=retention_days)
    try:
        deleted = store.delete_before(cutoff)
    except StorageError as exc:
        log.error("retention: could not delete measurements older than %s: %s", cutoff, exc)
        return 0
    log.info("retention: deleted %d measurements started before %s", deleted, rfc3339(cutoff))
    return deleted
