"""A SQLite CSV export split over processes (storage.export_jobs).

Whatever the split, the bytes must be those of a one-process export, read
from one state of the database even while another process keeps writing.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from probe.errors import StorageError
from storage import MeasurementFilter, Store, Vantage, export_sqlite
from storage import export_jobs as jobs_module
from storage.export import CsvColumnGroup, ExtraColumns, export_csv
from storage.records import ALL_MEASUREMENTS
from storage.timeline import reported_csv_columns
from tests.storage import factories as F

ROOT = Path(__file__).resolve().parents[2]
MINUTE = dt.timedelta(minutes=1)
ODD = CsvColumnGroup(
    ("odd", "tcp"), ("verdict", "tcp_ms"), lambda verdict, tcp: (f"={verdict}", tcp)
)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(jobs_module, "MIN_ROWS_PER_JOB", 5)
    with Store.open(f"sqlite:///{tmp_path}/jobs.db") as s:
        yield s


@pytest.fixture
def splits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of worker processes each export started (0: one process)."""
    started: list[int] = []
    real = jobs_module._run

    def run(*args: Any) -> int | None:
        started.append(len(args[-1]))
        return real(*args)

    monkeypatch.setattr(jobs_module, "_run", run)
    return started


def _fill(store: Store, count: int) -> list[str]:
    """Rows of several vantages and verdicts, some at equal times, hostile text in places."""
    ids = []
    vantages = [
        F.VANTAGE,
        Vantage(name="-cmd", country="IR", asn=-1, network='net, "x"\n'),
        Vantage(name="berlin", country="DE", asn=3320, network="DTAG"),
    ]
    titles = ["Site blocked", '=HYPERLINK("x"), a', "sep\x1finside", "line\r\nbreak", None]
    for i in range(count):
        when = F.START + (i // 3) * MINUTE  # three rows share each instant
        if i % 4:
            obs = F.blocked_sni(started_at=when, title=titles[i % len(titles)])
            ids.append(store.save(obs, F.BLOCKED, vantages[i % 3]))
        else:
            ids.append(store.save(F.accessible(started_at=when), F.ACCESSIBLE, vantages[i % 3]))
    return ids


def _export(store: Store, jobs: int, f: MeasurementFilter = ALL_MEASUREMENTS, **kw: Any) -> str:
    out = io.StringIO(newline="")
    seen: list[int] = []
    count = export_csv(store, out, f, jobs=jobs, progress=seen.append, **kw)
    assert count == _count(out.getvalue())
    return out.getvalue()


def _count(text: str) -> int:
    return len(list(csv.reader(io.StringIO(text, newline="")))) - 1


def _raw(store: Store, sql: str, *params: object) -> None:
    def run(conn: Connection) -> None:
        conn.exec_driver_sql(sql, params)

    store.database.write(run)


@pytest.mark.parametrize("jobs", [2, 3, 4])
def test_split_export_writes_the_one_process_bytes(
    store: Store, splits: list[int], jobs: int
) -> None:
    _fill(store, 60)
    odd = _fill(store, 1)[0]  # a stored time SQLAlchemy wrote differently: still in its place
    _raw(store, "UPDATE measurements SET started_at = ? WHERE id = ?", "2024-02-17T17:20", odd)
    extras: list[list[ExtraColumns]] = [[], [ODD], [*reported_csv_columns(store), ODD]]
    filters = [
        ALL_MEASUREMENTS,
        MeasurementFilter(since=F.START + 2 * MINUTE, until=F.START + 17 * MINUTE),
        MeasurementFilter(country="IR"),
        MeasurementFilter(verdict="blocked", domain="x.com"),
    ]
    for extra in extras:
        for f in filters:
            splits.clear()
            assert _export(store, jobs, f, extra=extra) == _export(store, 1, f, extra=extra)
            assert splits and splits[0] == jobs - 1, (f, splits)


def test_workers_output_copied_batch_by_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, splits: list[int]
) -> None:
    """Small, slow batches in the workers: the caller copies their files while
    they grow, through Python (StringIO) and through the kernel (a file)."""
    monkeypatch.setattr(export_sqlite, "BATCH", 3)
    _fill(store, 60)
    expected = _export(store, 1)
    parent, real = os.getpid(), export_sqlite._format_batch

    def slow_in_workers(*args: Any) -> str:
        if os.getpid() != parent:
            time.sleep(0.005)
        return real(*args)

    monkeypatch.setattr(export_sqlite, "_format_batch", slow_in_workers)
    monkeypatch.setattr(jobs_module, "POLL_S", 0.001)  # copy as often as possible
    assert _export(store, 3) == expected
    path = tmp_path / "out.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        export_csv(store, out, jobs=3)
    assert path.read_bytes().decode() == expected
    assert splits == [2, 2]


def test_ranges_cover_every_row_once_even_at_equal_times(store: Store) -> None:
    _fill(store, 40)
    _raw(store, "UPDATE measurements SET started_at = ?", "2024-02-17 17:05:00.000000")
    with store.database.reading() as conn:
        ranges = jobs_module._ranges(conn, ALL_MEASUREMENTS, 4)
    assert len(ranges) == 1  # one instant cannot be cut
    assert _export(store, 4) == _export(store, 1)


def test_split_export_reports_progress_of_every_process(
    store: Store, monkeypatch: pytest.MonkeyPatch, splits: list[int]
) -> None:
    from storage import export

    monkeypatch.setattr(export, "PROGRESS_EVERY", 7)
    _fill(store, 50)
    seen: list[int] = []
    export_csv(store, io.StringIO(newline=""), jobs=3, extra=[], progress=seen.append)
    assert splits == [2]
    assert seen == list(range(7, 50, 7))


def test_small_exports_and_limits_stay_in_one_process(store: Store, splits: list[int]) -> None:
    _fill(store, 9)  # fewer than two jobs' worth
    _export(store, 4, extra=[])
    _fill(store, 30)
    _export(store, 4, MeasurementFilter(limit=20), extra=[])
    _export(store, 4, MeasurementFilter(domain="nowhere.example"), extra=[])
    assert splits == [3]  # only the last one forked, then found too few rows
    _export(store, 1, extra=[])
    assert splits == [3]


def test_threaded_callers_stay_in_one_process(store: Store, splits: list[int]) -> None:
    """A fork copies only the calling thread: locks another thread holds stay held."""
    _fill(store, 30)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _export(store, 2, extra=[]) == _export(store, 1, extra=[])
    finally:
        stop.set()
        other.join()
    assert splits == []


def test_locked_database_is_exported_by_one_process(
    store: Store, splits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If writers cannot be paused (a long write holds the lock), one process
    does it all, after a short wait rather than the 30 s busy timeout."""
    monkeypatch.setattr(jobs_module, "LOCK_WAIT_S", 0.3)
    _fill(store, 30)
    expected = _export(store, 1, extra=[])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, store.database.url.database or ""],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        assert _export(store, 2, extra=[]) == expected
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert splits == [1]
    # Every pooled connection keeps the database's own busy timeout.
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(store.database.engine.connect()) for _ in range(3)]
        assert [c.exec_driver_sql("PRAGMA busy_timeout").scalar() for c in conns] == [30_000] * 3


_HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_no_temporary_file_means_one_process(
    store: Store, monkeypatch: pytest.MonkeyPatch, splits: list[int]
) -> None:
    _fill(store, 30)

    def full(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    assert _export(store, 3, extra=[]) == _export(store, 1, extra=[])
    assert splits == []


def _fail_in_worker(monkeypatch: pytest.MonkeyPatch, fail: Callable[[], None]) -> None:
    parent = os.getpid()
    real = export_sqlite.write_rows

    def write_rows(*args: Any, **kw: Any) -> int:
        if os.getpid() != parent:
            fail()
        return real(*args, **kw)

    monkeypatch.setattr(jobs_module, "write_rows", write_rows)


def _raise_storage_error() -> None:
    raise StorageError("database error on jobs.db: disk I/O error")


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        (_raise_storage_error, "database error on jobs.db: disk I/O error"),
        (lambda: os._exit(3), "export worker probe-export-1 died (exit status 3)"),
        (lambda: 1 / 0, "export worker probe-export-1 failed: ZeroDivisionError: division by zero"),
    ],
)
def test_a_failing_worker_fails_the_export_in_one_line(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fail: Callable[[], None],
    message: str,
) -> None:
    _fill(store, 30)
    _fail_in_worker(monkeypatch, fail)
    with pytest.raises(StorageError) as raised:
        _export(store, 2, extra=[])
    assert str(raised.value) == message
    assert [p.name for p in tmp_path.iterdir() if "export" in p.name] == []
    import multiprocessing

    assert multiprocessing.active_children() == []


def test_ctrl_c_stops_the_workers(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    _fill(store, 30)
    parent, real = os.getpid(), export_sqlite.write_rows

    def interrupted(*args: Any) -> int:
        """Ctrl-C in the caller, after its first batch; the workers carry on."""

        def counted(rows: int) -> None:
            raise KeyboardInterrupt

        if os.getpid() != parent:
            return real(*args)
        db, conn, out, f, groups = args[:5]
        return real(db, conn, out, f, groups, counted)

    monkeypatch.setattr(jobs_module, "write_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _export(store, 3, extra=[])
    assert multiprocessing.active_children() == []


def test_cli_reports_ctrl_c(
    tmp_path: Path,
    store: Store,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storage import export
    from tests.storage.test_cli_data import run

    def interrupted(*args: Any, **kw: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_csv", interrupted)
    code, _, err = run(
        capsys, monkeypatch, "export", "csv", "--db", f"sqlite:///{tmp_path}/jobs.db"
    )
    assert (code, err) == (130, "probe: interrupted\n")


def test_one_snapshot_while_another_process_writes(
    tmp_path: Path, store: Store, splits: list[int]
) -> None:
    """Rows committed one by one, at random times, by another process: every
    export holds exactly the first K of them, never a gap (which would mean
    the processes read different states of the database)."""
    _fill(store, 30)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(script), store.database.url.database or "", str(tmp_path / "stop")],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        counts = set()
        for _ in range(12):
            text = _export(store, 3, extra=[])
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
            seqs = sorted(int(r["input"].split("seq=")[1]) for r in rows if "seq=" in r["input"])
            assert seqs == list(range(len(seqs))), "a gap: the processes saw different states"
            counts.add(len(seqs))
    finally:
        (tmp_path / "stop").touch()
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert len(counts) > 3, "the writer did not write while exporting"
    assert splits and all(n == 2 for n in splits)


_WRITER = textwrap.dedent(
    """
    import dataclasses, datetime as dt, os, random, sys
    from storage import Store
    from tests.storage import factories as F

    rng = random.Random(5)
    with Store.open("sqlite:///" + sys.argv[1], migrate=False) as store:
        print("writing", flush=True)
        seq = 0
        while not os.path.exists(sys.argv[2]):
            when = F.START + dt.timedelta(seconds=rng.randrange(0, 600))
            obs = dataclasses.replace(F.accessible(started_at=when), input=f"x?seq={seq}")
            store.save(obs, F.ACCESSIBLE, F.VANTAGE)
            seq += 1
    """
)


def test_cli_jobs_option(
    tmp_path: Path,
    store: Store,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.storage.test_cli_data import run

    _fill(store, 30)
    url = f"sqlite:///{tmp_path}/jobs.db"
    outputs = []
    for jobs in ("1", "3"):
        path = tmp_path / f"out{jobs}.csv"
        args = ("export", "csv", "--db", url, "-j", jobs, "-o", str(path))
        code, _, err = run(capsys, monkeypatch, *args)
        assert (code, err) == (0, "")
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"\r\n") > 30
    code, _, err = run(capsys, monkeypatch, "export", "csv", "--db", url, "--jobs", "0")
    assert code == 2 and "--jobs" in err


def test_default_jobs_follows_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    assert jobs_module.default_jobs() == jobs_module.MAX_JOBS
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert jobs_module.default_jobs() == 1


def test_ranges_are_in_order_and_partition_the_rows(store: Store) -> None:
    _fill(store, 45)
    f = MeasurementFilter(since=F.START + MINUTE)
    with store.database.reading() as conn:
        ranges = jobs_module._ranges(conn, f, 3)
    assert len(ranges) == 3
    assert ranges[0].since == f.since and ranges[-1].until is None
    for before, after in itertools.pairwise(ranges):
        assert before.until == after.since
    assert {dataclasses.replace(r, since=None, until=None) for r in ranges} == {
        dataclasses.replace(f, since=None, until=None)
    }
    counts = [_count(_export(store, 1, r, extra=[])) for r in ranges]
    # 42 rows from one minute on, three at each instant; the bounds are the
    # times of rows 14 and 28, and a range starts with the whole instant.
    assert counts == [12, 15, 15]


@pytest.mark.parametrize("kind", ["file", "file-rewritten", "buffered", "text"])
def test_worker_output_is_appended_in_place(tmp_path: Path, kind: str) -> None:
    """Copied by sendfile() to a file on disk, else through Python; either way
    in order with what the caller writes around it, where it writes."""
    buffer = io.BytesIO()
    out: io.TextIOBase
    junk = b"z" * 1000 if kind == "file-rewritten" else b""  # written over from the start
    if kind.startswith("file"):
        (tmp_path / "out.csv").write_bytes(junk)
        out = (tmp_path / "out.csv").open("r+", encoding="utf-8", newline="")
    elif kind == "buffered":
        out = io.TextIOWrapper(buffer, encoding="utf-8", newline="")
    else:
        out = io.StringIO(newline="")
    row = 'é,"x"\r\n'.encode()
    with tempfile.TemporaryFile() as part:
        part.write(row * 3 + b"x" * 100_000)  # rows, then what the worker is still writing
        part.flush()
        offset = os.lseek(part.fileno(), 0, os.SEEK_CUR)  # where the worker appends (shared)
        out.write("head\r\n")
        for start, end in ((0, len(row)), (len(row), len(row)), (len(row), 3 * len(row))):
            assert jobs_module._copy(part, out, start, end) == end  # type: ignore[arg-type]
            assert os.lseek(part.fileno(), 0, os.SEEK_CUR) == offset
            if start == 0:
                out.write("middle\r\n")
        out.write("tail\r\n")
    out.flush()
    expected = 'head\r\né,"x"\r\nmiddle\r\né,"x"\r\né,"x"\r\ntail\r\n'
    if kind.startswith("file"):
        out.close()
        written = (tmp_path / "out.csv").read_bytes()
        assert written == expected.encode() + junk[len(expected.encode()) :]
    elif kind == "buffered":
        assert buffer.getvalue().decode() == expected
    else:
        assert isinstance(out, io.StringIO) and out.getvalue() == expected
