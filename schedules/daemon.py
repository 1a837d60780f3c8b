"""``probe run``: check every target on its own schedule until told to stop.

Why APScheduler's AsyncIOScheduler (not the BackgroundScheduler): checks are
asyncio coroutines (probe.check.check_targets), so running them as tasks on
the scheduler's own event loop needs no thread per job and no loop per
thread; on a Raspberry Pi that keeps the daemon at one busy thread and a small
RSS, and shutdown is plain task cancellation.  Only the retention delete (a
blocking database call) goes to a worker thread.

Job policy: one interval job per target (``max_instances=1``: a slow check
of a target is never overlapped by the next one; ``coalesce``: runs missed
while the host slept or the loop was busy collapse into one catch-up run;
``misfire_grace_time=None``: a late run is still run, because a late
measurement beats a missing one).  APScheduler's interval jitter adds
0..jitter seconds to each run time, so successive runs of a target are
between ``interval`` and ``interval + jitter`` apart.

Restart: next-run times are persisted in the state file (schedules.state)
after every submission; a restart resumes them (an overdue target runs at
once, once).  A run the previous daemon never finished (kill -9, power cut)
is recorded as interrupted and re-run at once.  The database itself is only
written in single transactions by storage, so a crash loses at most the
measurement in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from probe import eventloop
from probe.errors import StorageError, UsageError
from schedules import jobs
from schedules import state as st
from schedules.spool import Spool

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from probe.config import Config
    from schedules.metrics import Metrics
    from storage.store import Store

log = logging.getLogger(__name__)

RETENTION_EVERY = dt.timedelta(days=1)
RETENTION_FIRST_DELAY = dt.timedelta(minutes=1)  # let the first checks go first


# ---------------------------------------------------------------- locations


def state_path(config: Config) -> Path:
    """Where the daemon keeps its state: beside a SQLite database, else in the
    service's state directory (systemd ``StateDirectory=``) or XDG state home."""
    from storage.database import resolve_url

    url = resolve_url(config.storage.url)
    database = url.database or ""
    sqlite_file = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and sqlite_file:
        return Path(database).with_name(Path(database).name + ".daemon.json")
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        return Path(state_dir) / "daemon.json"
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "reachprobe" / "daemon.json"


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path.lock`` for the daemon's life: two daemons on one state would
    measure everything twice and fight over the file."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(lock, "a+")  # noqa: SIM115 - held open for the daemon's life
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another `probe run` already uses {path} (lock {lock} is held)"
            ) from None
        yield
    finally:
        handle.close()


def is_running(config: Config) -> bool:
    """True while a daemon holds the state lock for this config."""
    lock = state_path(config).with_name(state_path(config).name + ".lock")
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def after_stop(config: Config, state: st.DaemonState) -> st.DaemonState:
    """``state``, read again if it says a daemon never recorded its stop: read
    before :func:`is_running` said no daemon runs, it may predate a clean stop
    (a daemon records its stop before it lets go of the lock), which is no
    unclean one."""
    return st.StateFile(state_path(config)).load() if state.stop_unrecorded else state


def health_problem(config: Config, now: dt.datetime | None = None) -> str | None:
    """Why the daemon for ``config`` is unhealthy, or None.

    Unhealthy: not running, or a target overdue by more than its jitter, the
    check timeout and a minute of slack (a stuck loop or scheduler).  Reads
    only the lock and the state file, so a health check costs little CPU.
    """
    state = st.StateFile(state_path(config)).load()
    if not is_running(config):
        state = after_stop(config, state)
        dead = f": {state.unclean_stop()}" if state.stop_unrecorded else ""
        return f"the daemon is not running{dead}"
    now = now or jobs.utcnow()
    schedule = config.schedule
    slack = dt.timedelta(seconds=schedule.jitter_s + config.checks.timeout_s + 60)
    from probe.config import resolve_targets

    configured = {t.domain for t in resolve_targets(config)}
    for domain, target in sorted(state.targets.items()):
        if domain in configured and target.next_run is not None and target.next_run + slack < now:
            return f"{domain} overdue since {target.next_run.isoformat(timespec='seconds')}"
    return None


# ---------------------------------------------------------------- scheduling


def resume_time(
    target: st.TargetState,
    now: dt.datetime,
    interval_s: float,
    jitter_s: float,
    rng: random.Random | None = None,
) -> dt.datetime:
    """When a target is first due after a (re)start.

    Never checked: within the jitter, so a fresh probe does not fire every
    target in the same second.  Due while the daemon was down (or left
    unfinished): now.  Due later than one interval from now (the interval was
    shortened since): treated as never checked.
    """
    spread = dt.timedelta(seconds=(rng or random).uniform(0, jitter_s))
    if target.unfinished:
        return now
    if target.next_run is None:
        return now + spread
    if target.next_run <= now:
        return now
    if target.next_run > now + dt.timedelta(seconds=interval_s + jitter_s):
        return now + spread
    return target.next_run


def make_trigger(interval_s: float, jitter_s: float) -> Any:
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=interval_s, jitter=jitter_s or None, timezone=dt.UTC)


JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


# ---------------------------------------------------------------- the daemon


def _export_timeline(metrics: Metrics, store: Store, country: str | None) -> None:
    """The vantage country's reported events as metrics (Grafana annotations).

    Metrics are a view: a database that cannot give the events must not stop
    the daemon, so the failure is logged and the series stay empty.
    """
    if not country:
        return
    from collectors.timeline import ensure_builtin_timeline

    try:
        ensure_builtin_timeline(store)
        metrics.timeline(store.iter_events(country=country))
    except StorageError as exc:
        log.warning("timeline events not exported as metrics: %s", exc)


@dataclass
class Daemon:
    """One running ``probe run``: build it, then ``await daemon.run(stop)``."""

    config: Config

    async def run(self, stop: asyncio.Event) -> None:
        from probe.check import plan
        from probe.config import check_options, resolve_targets, vantage_of
        from probe.fdlimit import allowed_concurrency
        from schedules.metrics import Metrics
        from schedules.tracing import tracer_for
        from storage.store import Store

        config = self.config
        options = check_options(config)
        plan(options)  # bad options fail now, not at the first run
        # Checks at once, fitted to the descriptor limit (or refused) now, not by EMFILE later.
        concurrency = allowed_concurrency(
            options, config.checks.concurrency, control_sites_each=True
        )
        targets = {t.domain: t for t in resolve_targets(config)}
        path = state_path(config)
        with exclusive(path):
            store = Store.open(config.storage.url, busy_timeout=config.storage.busy_timeout_s)
            if store.created:
                log.info("created a new database %s", store.url)
            try:
                state = st.StateFile(path)
                state.load()
                vantage = vantage_of(config)
                metrics = Metrics(vantage)
                _export_timeline(metrics, store, vantage.country)
                spool = Spool(path.with_name(path.name + ".unsaved.jsonl"))
                runner = jobs.Runner(
                    store=store,
                    vantage=vantage,
                    options=options,
                    targets=targets,
                    state=state,
                    metrics=metrics,
                    spool=spool,
                    concurrency=concurrency,
                    tracer=tracer_for(config),
                )
                listener = None
                if config.metrics.address is not None:
                    host, port = config.metrics.address
                    try:
                        listener = metrics.serve(host, port)
                    except OSError as exc:
                        raise UsageError(
                            f"cannot listen for metrics on {config.metrics.listen}: {exc.strerror}"
                        ) from None
                    log.info("metrics on http://%s:%d/metrics", host, listener.port)
                uploads = None
                if config.upload.url is not None and config.upload.token is not None:
                    from schedules.upload import Uploader

                    uploads = Uploader(
                        store, config.upload.url, config.upload.token, state,
                        batch_size=config.upload.batch, vantage=vantage.name,
                        ca_bundle=config.upload.ca_bundle,
                    )  # fmt: skip
                    runner.after_check = uploads.kick
                    log.info("uploading to %s after every check", config.upload.url)
                try:
                    uploading = asyncio.create_task(uploads.run(stop)) if uploads else None
                    await self._serve(runner, stop)
                    if uploading is not None:
                        await uploading
                finally:
                    spool.close()
                    if listener is not None:
                        listener.close()
            finally:
                with contextlib.suppress(StorageError):
                    store.close()

    async def _serve(self, runner: jobs.Runner, stop: asyncio.Event) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        config = self.config
        schedule = config.schedule
        now = jobs.utcnow()
        self._recover(runner.state, now)
        scheduler = AsyncIOScheduler(timezone=dt.UTC, job_defaults=JOB_DEFAULTS)
        loop = asyncio.get_running_loop()

        def persist(job_id: str) -> None:
            job = scheduler.get_job(job_id)
            if job is None or job_id not in runner.targets:
                return
            runner.state.update_target(job_id, next_run=job.next_run_time)
            if runner.metrics is not None:
                runner.metrics.scheduled(job_id, job.next_run_time)

        # The event fires before APScheduler computes the next run: read it
        # once the current loop callback (the scheduler's wakeup) is done.
        scheduler.add_listener(
            lambda event: loop.call_soon(persist, event.job_id),
            EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES,
        )
        for domain in runner.targets:
            first = resume_time(
                runner.state.target(domain), now, schedule.interval_s, schedule.jitter_s
            )
            scheduler.add_job(
                jobs.check_job,
                make_trigger(schedule.interval_s, schedule.jitter_s),
                args=(runner, domain),
                id=domain,
                name=f"check {domain}",
                next_run_time=first,
            )
            runner.state.update_target(domain, next_run=first)
            if runner.metrics is not None:
                runner.metrics.scheduled(domain, first)
        if config.storage.retention_days > 0:
            last = runner.state.state.retention_last_run
            due = now + RETENTION_FIRST_DELAY
            if last is not None and last + RETENTION_EVERY > due:
                due = last + RETENTION_EVERY
            scheduler.add_job(
                self._retention,
                make_trigger(RETENTION_EVERY.total_seconds(), 0),
                args=(runner,),
                id="retention",
                name="retention",
                next_run_time=due,
            )
        runner.state.update(pid=os.getpid(), started_at=now, stopped_at=None)
        scheduler.start()
        log.info(
            "started: %d targets every %s (+0..%s jitter), vantage %r, state %s",
            len(runner.targets),
            _human(schedule.interval_s),
            _human(schedule.jitter_s),
            config.vantage.name,
            runner.state.path,
        )
        try:
            await stop.wait()
        finally:
            await self._shutdown(scheduler, runner)

    async def _shutdown(self, scheduler: AsyncIOScheduler, runner: jobs.Runner) -> None:
        grace = self.config.schedule.shutdown_grace_s
        runner.stopping = True
        scheduler.pause()
        running = set(runner.inflight)
        if running:
            log.info("stopping: waiting up to %s for %d checks", _human(grace), len(running))
            _done, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the next loop turn
        runner.state.update(pid=None, stopped_at=jobs.utcnow())
        log.info("stopped")

    @staticmethod
    def _recover(state: st.StateFile, now: dt.datetime) -> None:
        """Record the runs a crashed daemon left unfinished."""
        for domain, target in state.state.targets.items():
            if target.unfinished:
                assert target.last_started is not None
                log.warning(
                    "%s: the check started %s never finished (daemon killed?); "
                    "nothing was stored, running it again now",
                    domain,
                    target.last_started.isoformat(timespec="seconds"),
                )
                state.update_target(
                    domain,
                    last_finished=now,
                    last_outcome=st.INTERRUPTED,
                    interrupted=target.interrupted + 1,
                    next_run=now,
                )

    async def _retention(self, runner: jobs.Runner) -> None:
        days = self.config.storage.retention_days
        await asyncio.to_thread(jobs.retention_job, runner.store, days)
        runner.state.update(retention_last_run=jobs.utcnow())


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def run(config: Config) -> int:
    """Run the daemon until SIGTERM or SIGINT; returns the exit status (0)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig, stop)
        await Daemon(config).run(stop)

    eventloop.run(main())
    return 0


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("received %s, shutting down", sig.name)
    stop.set()
