"""Where the database is, how to connect to it, and what its errors mean.

SQLite is the default (one file, no server: a probe on a Raspberry Pi);
PostgreSQL serves several probes or a collector.  Both are driven through
SQLAlchemy; this module hides their differences in connection set-up,
locking and error messages, so the rest of storage is backend-neutral.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc

from probe.errors import StorageError, UsageError

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
WRITE_ATTEMPTS = 3  # a SQLite write that still finds the lock taken after the busy timeout


def default_path() -> Path:
    """The SQLite file used when neither ``--db`` nor ``$PROBE_DB`` says otherwise.

    Under systemd (``StateDirectory=``) the service's state directory;
    otherwise the user's XDG data directory.
    """
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "probe.db"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "reachprobe" / "probe.db"


def resolve_url(url: str | None) -> URL:
    """The SQLAlchemy URL for ``url``, ``$PROBE_DB`` or the default path.

    A bare path means a SQLite file; ``postgres://`` and ``postgresql://``
    are driven by psycopg 3, the driver this project installs.
    """
    text = url or os.environ.get("PROBE_DB") or str(default_path())
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        parsed = make_url(text)
    except (sa_exc.ArgumentError, ValueError):  # ValueError: a non-numeric port
        raise UsageError(f"invalid database URL: {_mask(text)}") from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(
            f"unsupported database {parsed.get_backend_name()!r}: "
            "use a SQLite path or a PostgreSQL URL"
        )
    return parsed


def _mask(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return text
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


class Database:
    """An engine plus the knowledge to explain its failures in one line."""

    def __init__(self, url: URL, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self.backend = url.get_backend_name()
        self.display = url.render_as_string(hide_password=True)
        if self.backend == "sqlite":
            self._prepare_sqlite_directory()
            self.engine = _sqlite_engine(url, busy_timeout)
        else:
            self.engine = create_engine(
                url, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}, pool_pre_ping=True
            )

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    def _prepare_sqlite_directory(self) -> None:
        database = self.url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return
        directory = Path(database).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StorageError(
                f"cannot open database {database}: {directory} is not a directory"
            ) from None
        except OSError as exc:
            raise StorageError(
                f"cannot open database {database}: cannot create {directory} ({exc.strerror})"
            ) from None
        if not Path(database).exists() and not os.access(directory, os.W_OK | os.X_OK):
            raise StorageError(f"cannot open database {database}: directory not writable")

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn any database failure inside the block into a one-line StorageError."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise self.error(exc) from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.errors(), self.engine.connect() as conn:
            yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, committed or raised as StorageError.

        On SQLite the transaction takes the write lock up front (BEGIN
        IMMEDIATE), so two writers queue on the busy timeout instead of one
        failing when it upgrades a read lock; if the lock is still held after
        the timeout the whole transaction is retried a few times.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(probe_write=True)
                    with conn.begin():
                        return work(conn)
            except sa_exc.OperationalError as exc:
                if attempt < WRITE_ATTEMPTS and self.is_sqlite and _is_locked(exc):
                    time.sleep(0.05 * attempt)
                    continue
                raise self.error(exc) from exc
            except sa_exc.SQLAlchemyError as exc:
                raise self.error(exc) from exc
        raise AssertionError("unreachable")

    def error(self, exc: BaseException) -> StorageError:
        """A one-line, actionable description of ``exc``."""
        if isinstance(exc, StorageError):
            return exc
        detail = str(getattr(exc, "orig", None) or exc).strip()
        first = detail.splitlines()[0] if detail else type(exc).__name__
        lowered = detail.lower()
        if self.is_sqlite:
            return StorageError(self._sqlite_message(lowered, first))
        return StorageError(self._postgres_message(exc, lowered, first))

    def _sqlite_message(self, lowered: str, first: str) -> str:
        path = self.url.database or ":memory:"
        if "locked" in lowered or "busy" in lowered:
            return (
                f"database is locked: {path} (another process holds a write lock "
                f"for more than {self.busy_timeout:g} s)"
            )
        if "unable to open database file" in lowered:
            directory = Path(path).parent
            if not os.access(directory, os.W_OK | os.X_OK):
                return f"cannot open database {path}: directory not writable"
            return f"cannot open database {path}"
        if "readonly" in lowered:
            return f"cannot write database {path}: it is read-only"
        if "not a database" in lowered or "malformed" in lowered:
            return f"cannot read database {path}: damaged or not a SQLite database"
        if "disk is full" in lowered or "disk i/o" in lowered:
            return f"cannot write database {path}: {first}"
        if "no such table" in lowered:
            return f"database {path} has no reachprobe tables; run: probe db upgrade"
        return f"database error on {path}: {first}"

    def _postgres_message(self, exc: BaseException, lowered: str, first: str) -> str:
        where = self.location()
        reasons = (
            ("connection refused", "connection refused"),
            ("password authentication failed", "authentication failed"),
            ("no password supplied", "authentication failed (no password)"),
            ("does not exist", first.split("FATAL:")[-1].strip().rstrip(".")),
            ("timeout expired", "connection timed out"),
            ("no such file or directory", "no server socket there"),
            ("could not translate host name", "unknown host"),
            ("name or service not known", "unknown host"),
        )
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            for needle, reason in reasons:
                if needle in lowered:
                    return f"cannot connect to PostgreSQL at {where}: {reason}"
        if "undefinedtable" in type(getattr(exc, "orig", None)).__name__.lower():
            return f"database at {where} has no reachprobe tables; run: probe db upgrade"
        return f"PostgreSQL error at {where}: {first}"

    def location(self) -> str:
        """host:port (or the socket directory) of a server URL, the file of SQLite."""
        if self.is_sqlite:
            return self.url.database or ":memory:"
        host = self.url.host or str(self.url.query.get("host") or "localhost")
        if host.startswith("/"):
            return host
        return f"{host}:{self.url.port or 5432}"

    def dispose(self) -> None:
        self.engine.dispose()


def _is_locked(exc: sa_exc.OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event own transactions (pysqlite's own
        # implicit BEGIN would make BEGIN IMMEDIATE and transactional DDL
        # impossible).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("probe_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
