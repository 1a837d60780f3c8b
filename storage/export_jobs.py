"""A large SQLite CSV export split over several processes.

Formatting a row costs a few microseconds of Python, on one core per
process (the GIL; SQLite's own share of the work is done holding it, so a
reader thread does not help).  A large export is therefore split by
``started_at`` into contiguous ranges of about equal row counts: the calling
process writes the first range straight to the output while forked workers
write the others, each to a temporary file beside the database, which the
caller appends to the output in order, while the file grows.  Each range is
written by
:func:`storage.export_sqlite.write_rows`, so the bytes are exactly those of
a one-process export.

Every process must read the same state of the database.  Each has its own
connection, hence its own snapshot, so the caller holds the write lock
(``BEGIN IMMEDIATE``) from before its own snapshot is taken until every
worker has started its query: no commit can fall between the snapshots.
Writers (the daemon) wait on their busy timeout meanwhile, typically a few
milliseconds.  A database that cannot be locked within :data:`LOCK_WAIT_S`
(a long write, a read-only file) is exported by one process.

SQLite connections must not cross a fork, so the engine's pool is emptied
first and the workers are forked before the caller opens its connection;
each worker then opens its own.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import errno
import io
import itertools
import multiprocessing
import os
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any, TextIO

from sqlalchemy import Connection, func, select

from probe.errors import StorageError
from storage.database import Database
from storage.export import CsvColumnGroup, Progress
from storage.export_sqlite import write_rows
from storage.models import measurements, vantages
from storage.records import MeasurementFilter
from storage.store import apply_filter

MAX_JOBS = 4
MIN_ROWS_PER_JOB = 50_000  # below this, starting a process costs more than it saves
LOCK_WAIT_S = 2.0  # how long to wait for a writer before exporting in one process
READY_TIMEOUT_S = 15.0  # how long writers may be held up while workers start their queries
POLL_S = 0.2  # progress updates while waiting for a worker

m = measurements.c


def default_jobs() -> int:
    """One export process per usable CPU, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def export_split(
    db: Database,
    out: TextIO,
    f: MeasurementFilter,
    groups: Sequence[CsvColumnGroup],
    progress: Progress,
    jobs: int,
) -> int | None:
    """Write the rows of ``f`` with up to ``jobs`` processes; the row count,
    or None if this export is not worth splitting or cannot be (the caller
    then writes it in one process)."""
    path = _splittable(db, f, jobs)
    if path is None:
        return None
    jobs = min(jobs, _row_bound(db) // MIN_ROWS_PER_JOB)
    if jobs < 2:
        return None
    db.engine.dispose()  # no SQLite connection may cross the fork
    for stream in (out, sys.stdout, sys.stderr):  # nor unwritten output: a worker would repeat it
        stream.flush()
    workers: list[_Worker] = []
    try:
        try:
            for slot in range(1, jobs):
                workers.append(_Worker.start(db, groups, slot, path.parent))
        except OSError:  # no temporary file anywhere, or no fork (memory, process limit)
            return None
        return _run(db, out, f, groups, progress, workers)
    finally:
        for worker in workers:
            worker.stop()


def _splittable(db: Database, f: MeasurementFilter, jobs: int) -> Path | None:
    """The database file, if an export of ``f`` may be split at all."""
    name = db.url.database or ""
    if jobs < 2 or not db.is_sqlite or f.limit is not None:
        return None
    if name in ("", ":memory:") or name.startswith("file:") or not Path(name).is_file():
        return None
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return None  # a fork copies only this thread: locks others hold would stay held
    if db.engine.pool.checkedout():  # type: ignore[attr-defined]  # QueuePool
        return None  # a connection in use would cross the fork
    return Path(name)


def _row_bound(db: Database) -> int:
    """An upper bound of the row count, read in O(log n): the largest rowid."""
    with db.reading() as conn:
        return int(conn.exec_driver_sql("SELECT max(rowid) FROM measurements").scalar() or 0)


def _run(
    db: Database,
    out: TextIO,
    f: MeasurementFilter,
    groups: Sequence[CsvColumnGroup],
    progress: Progress,
    workers: list[_Worker],
) -> int | None:
    with db.reading() as conn:
        try:
            with _writers_paused(db):
                ranges = _ranges(conn, f, len(workers) + 1)  # takes this snapshot
                for i, worker in enumerate(workers, start=1):
                    worker.send(ranges[i] if i < len(ranges) else None)
                if len(ranges) < 2:
                    return None
                deadline = time.monotonic() + READY_TIMEOUT_S
                for worker in workers[: len(ranges) - 1]:
                    worker.wait_ready(deadline)
        except _NotSplit:
            return None
        busy = workers[: len(ranges) - 1]
        mine = 0

        def report() -> None:
            progress.reach(mine + sum(w.rows for w in busy))

        def counted(rows: int) -> None:
            nonlocal mine
            mine += rows
            report()

        count = write_rows(db, conn, out, ranges[0], groups, counted)
    for worker in busy:
        count += worker.copy_to(out, report)
    progress.reach(count)
    return count


class _NotSplit(Exception):
    """This export is written by one process after all."""


@contextmanager
def _writers_paused(db: Database) -> Iterator[None]:
    """Hold the write lock (no commit can happen) for the duration of the block.

    Waits at most :data:`LOCK_WAIT_S` for a writer to finish (the database's
    busy timeout is far longer): a long write, a ``probe reclassify`` say,
    should not hold the export up; it then runs in one process.
    """
    conn = db.engine.connect()
    try:
        conn.execution_options(probe_write=True)
        driver = conn.connection.dbapi_connection
        assert driver is not None
        driver.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000)}")
        try:
            conn.begin()
        except Exception:  # read-only file, or a writer holding the lock
            raise _NotSplit from None
        yield
    finally:
        conn.invalidate()  # rolls back (nothing was written); its timeout is not the pool's
        conn.close()


def _ranges(conn: Connection, f: MeasurementFilter, jobs: int) -> list[MeasurementFilter]:
    """``f`` cut by start time into up to ``jobs`` ranges of about equal size, in order.

    Each bound is the start time of a row.  Whatever the stored text looks
    like, ``< bound`` and ``>= bound`` cut the export order in two, so the
    ranges, bounds strictly increasing, hold every row exactly once.
    """
    # Joined with vantages only to filter on them: otherwise the count and
    # the offsets read the started_at index alone.
    table = measurements.join(vantages) if f.vantage or f.country else measurements
    total = int(conn.scalar(apply_filter(select(func.count()).select_from(table), f, None)) or 0)
    parts = min(jobs, total // MIN_ROWS_PER_JOB)
    ordered = apply_filter(select(m.started_at).select_from(table), f, True)
    low = conn.scalar(ordered.limit(1)) if parts > 1 else None  # a first range never empty
    bounds: list[dt.datetime] = []
    for i in range(1, parts):
        bound = conn.scalar(ordered.offset(i * total // parts).limit(1))
        if bound is not None and low is not None and bound > low:
            bounds.append(bound)
            low = bound
    edges = [f.since, *bounds, f.until]
    return [dataclasses.replace(f, since=lo, until=hi) for lo, hi in itertools.pairwise(edges)]


class _Worker:
    """A forked process that writes one range to a temporary file."""

    def __init__(self, process: BaseProcess, pipe: Pipe, output: IO[bytes], shared: Any) -> None:
        self.process = process
        self.pipe = pipe
        self.output = output
        self._shared = shared  # [rows written, bytes flushed to output]: progress, early copies

    @classmethod
    def start(
        cls, db: Database, groups: Sequence[CsvColumnGroup], slot: int, directory: Path
    ) -> _Worker:
        ctx = multiprocessing.get_context("fork")
        output = _temporary_file(directory)
        shared = ctx.RawArray("q", 2)
        mine, theirs = ctx.Pipe()
        process = ctx.Process(
            target=_work,
            args=(db.url, db.busy_timeout, groups, theirs, output, shared),
            name=f"probe-export-{slot}",
            daemon=True,
        )
        process.start()
        theirs.close()
        return cls(process, mine, output, shared)

    @property
    def rows(self) -> int:
        return int(self._shared[0])

    def send(self, job: MeasurementFilter | None) -> None:
        """The range to write (None: nothing, exit)."""
        with suppress(OSError):  # it died already; wait_ready or copy_to says how
            self.pipe.send(job)

    def wait_ready(self, deadline: float) -> None:
        """Return once the worker's query has started (its snapshot is taken)."""
        if not self.pipe.poll(max(0.0, deadline - time.monotonic())):
            raise _NotSplit  # slow to start: let writers go, export in one process
        self._check(self._receive(), "ready")

    def copy_to(self, out: TextIO, tick: Callable[[], None]) -> int:
        """Copy the worker's rows to ``out`` as they come, until it is done; their number.

        Copying what is already written while the worker finishes its range
        keeps the copy off the critical path.
        """
        copied = 0
        while True:
            finished = self.pipe.poll(POLL_S)
            rows = self._check(self._receive(), "done") if finished else None
            written = int(self._shared[1])  # whole batches, flushed before "done"
            copied = _copy(self.output, out, copied, written)
            tick()
            if isinstance(rows, int):
                self.process.join()
                return rows

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.pipe.close()
        self.output.close()

    def _receive(self) -> tuple[str, object]:
        try:
            message: tuple[str, object] = self.pipe.recv()
        except (EOFError, OSError):
            self.process.join()
            raise StorageError(
                f"export worker {self.process.name} died (exit status {self.process.exitcode})"
            ) from None
        return message

    def _check(self, message: tuple[str, object], expected: str) -> object:
        kind, value = message
        if kind == "storage":
            raise StorageError(str(value))
        if kind != expected:
            raise StorageError(f"export worker {self.process.name} failed: {value}")
        return value


_COPY_CHUNK = 1 << 20


def _copy(source: IO[bytes], out: TextIO, start: int, end: int) -> int:
    """Bytes ``start`` to ``end`` of ``source``, UTF-8 text ending with a whole
    character, appended to ``out``; returns ``end``.  Inside the kernel when
    ``out`` is a UTF-8 text file on disk, else through Python.  Never moves
    ``source``'s offset, which the worker writing it shares."""
    raw = getattr(out, "buffer", None)
    if raw is not None and _is_utf8(getattr(out, "encoding", None)):
        out.flush()
        target = _regular_file(raw)
        if target is not None and hasattr(os, "sendfile"):
            done = start
            while done < end:
                sent = os.sendfile(target, source.fileno(), done, end - done)
                if sent == 0:
                    raise OSError(errno.EIO, "temporary export file shorter than written")
                done += sent
            raw.seek(os.lseek(target, 0, os.SEEK_CUR))  # tell the buffered writer
            return end
        write: Callable[[bytes], object] = raw.write
    else:
        decode = codecs.getincrementaldecoder("utf-8")().decode
        write = lambda data: out.write(decode(data))  # noqa: E731
    # pread, not seek and read: the worker shares this file's offset and is
    # still appending at it.
    done = start
    while done < end:
        data = os.pread(source.fileno(), min(_COPY_CHUNK, end - done), done)
        if not data:
            raise OSError(errno.EIO, "temporary export file shorter than written")
        write(data)
        done += len(data)
    return end


def _regular_file(raw: IO[bytes]) -> int | None:
    try:
        fd = raw.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return None
    return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _is_utf8(encoding: str | None) -> bool:
    try:
        return codecs.lookup(encoding or "").name == "utf-8"
    except LookupError:
        return False


def _temporary_file(directory: Path) -> IO[bytes]:
    """An unnamed file beside the database (a real disk, unlike a tmpfs /tmp)."""
    try:
        return tempfile.TemporaryFile(dir=directory, prefix=".probe-export-")
    except OSError:
        return tempfile.TemporaryFile(prefix="probe-export-")


def _work(
    url: Any,
    busy_timeout: float,
    groups: Sequence[CsvColumnGroup],
    pipe: Pipe,
    output: IO[bytes],
    shared: Any,
) -> None:
    """A worker's life: receive a range, write it, report "done" or the failure."""
    # Ctrl-C reaches the whole process group; the caller stops its workers
    # (SIGTERM), so they must not die of it first with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job = pipe.recv()
    if job is None:
        return
    try:
        db = Database(url, busy_timeout)
        text = io.TextIOWrapper(output, encoding="utf-8", newline="")

        def counted(batch: int) -> None:
            text.flush()  # to the file, where the caller may copy it from
            shared[0] += batch
            shared[1] = output.tell()

        with db.reading() as conn:
            count = write_rows(
                db, conn, text, job, groups, counted, lambda: pipe.send(("ready", None))
            )
        pipe.send(("done", count))
    except StorageError as exc:
        pipe.send(("storage", str(exc)))
    except OSError as exc:  # the temporary file: disk full, say
        pipe.send(("storage", f"cannot write a temporary export file: {exc.strerror}"))
    except Exception as exc:
        with suppress(OSError):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
