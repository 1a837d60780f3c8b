"""Where the database is, how it fails, and that concurrent writers lose nothing."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from probe.errors import StorageError, UsageError
from storage import Store, Vantage
from storage.database import Database, default_path, resolve_url
from tests.storage import factories as F


def test_default_path_prefers_systemd_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROBE_DB", raising=False)
    monkeypatch.setenv("HOME", "/home/probe")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert default_path() == Path("/home/probe/.local/share/reachprobe/probe.db")
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert default_path() == Path("/data/reachprobe/probe.db")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/reachprobe:/var/lib/other")
    assert default_path() == Path("/var/lib/reachprobe/probe.db")
    assert resolve_url(None).database == "/var/lib/reachprobe/probe.db"
    monkeypatch.setenv("PROBE_DB", "/srv/p.db")
    assert resolve_url(None).database == "/srv/p.db"


def test_urls_are_normalised() -> None:
    assert resolve_url("postgres://u:pw@db.invalid/p").drivername == "postgresql+psycopg"
    assert resolve_url("postgresql://u@db.invalid/p").drivername == "postgresql+psycopg"
    assert resolve_url("postgresql+psycopg://u@db.invalid/p").drivername == "postgresql+psycopg"
    assert resolve_url("~/probe.db").database == str(Path.home() / "probe.db")
    with pytest.raises(UsageError, match="unsupported database 'mysql'"):
        resolve_url("mysql://u@db.invalid/p")
    with pytest.raises(UsageError, match="invalid database URL"):
        resolve_url("postgresql://u:secret@db.invalid:notaport/p")


def test_password_is_masked() -> None:
    db = Database(resolve_url("postgres://probe:s3cret@db.invalid:6543/probe"))
    assert "s3cret" not in db.display and "***" in db.display
    assert db.location() == "db.invalid:6543"


def test_open_creates_the_default_directory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default location is made on first use (0700, the file 0600); a
    mistyped --db must not leave a tree of folders behind."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = default_path()
    with Store.open(str(path)) as store:
        assert store.created
        store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with Store.open(str(path)) as store:
        assert not store.created

    elsewhere = tmp_path / "a" / "b" / "probe.db"
    with pytest.raises(
        StorageError, match=r"^cannot create database .*: folder .*/a/b does not exist"
    ):
        Store.open(str(elsewhere))
    assert not (tmp_path / "a").exists()


def test_open_under_a_file_fails_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match=r"^cannot create database .*/file is not a directory$"):
        Store.open(str(blocker / "sub" / "probe.db"))


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "probe.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=r"^cannot read database .*not a SQLite database$"):
        Store.open(str(path))


def test_locked_database_fails_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "probe.db"
    with Store.open(str(path), busy_timeout=0.2) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            start = time.monotonic()
            with pytest.raises(StorageError) as raised:
                store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)
            waited = time.monotonic() - start
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        message = str(raised.value)
        assert message == (
            f"database is locked: {path} (another process holds a write lock for more than 0.2 s)"
        )
        assert 0.2 <= waited < 5
        # Once the lock is gone the same store works again.
        store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)
        assert store.count() == 1


def test_unreachable_postgresql_fails_in_one_line() -> None:
    # Port 1 on loopback: nothing listens there, the kernel refuses at once.
    with pytest.raises(StorageError) as raised:
        Store.open("postgresql://probe:pw@127.0.0.1:1/probe")
    assert str(raised.value) == "cannot connect to PostgreSQL at 127.0.0.1:1: connection refused"


def test_missing_postgresql_database(pg_server: str) -> None:
    from sqlalchemy import make_url

    url = make_url(pg_server).set(database="no_such_db").render_as_string(hide_password=False)
    with pytest.raises(
        StorageError, match=r'^cannot connect to PostgreSQL at /.*: .*"no_such_db" does not exist'
    ):
        Store.open(url)


def _writer(url: str, tag: str, count: int) -> None:
    from tests.storage import factories

    vantage = Vantage(name=f"writer-{tag}", country="PK")
    with Store.open(url) as store:
        for _ in range(count):
            store.save(factories.accessible(), factories.ACCESSIBLE, vantage)


def test_two_processes_writing_at_once_lose_nothing(db_url: str) -> None:
    with Store.open(db_url):
        pass  # schema in place; the writers race only on rows
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(db_url, tag, 200)) for tag in "ab"]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
    assert [p.exitcode for p in writers] == [0, 0]
    with Store.open(db_url) as store:
        from storage import MeasurementFilter

        assert store.count() == 400
        assert store.count(MeasurementFilter(vantage="writer-a")) == 200
        assert store.count(MeasurementFilter(vantage="writer-b")) == 200
