"""Where the database is, how to connect to it, and what its errors mean.

SQLite is the default (one file, no server: a probe on a Raspberry Pi);
PostgreSQL serves several probes or a collector.  Both are driven through
SQLAlchemy; this module hides their differences in connection set-up,
locking and error messages, so the rest of storage is backend-neutral.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc

from probe.errors import StorageError, UsageError

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
WRITE_ATTEMPTS = 3  # a SQLite write whose lock wait ended early (never past the busy timeout)
FILE_MODE = 0o600  # measurements name the vantage's network: not for other local users
DIRECTORY_MODE = 0o700
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # "garbage:::", "postgresql:/x"


class NoDatabase(StorageError):
    """A command that only reads was pointed at a SQLite file that does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no database at {path} (nothing stored there yet; check --db)")


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
    are driven by psycopg 3, the driver this project installs.  Text that
    looks like a mistyped URL (``garbage:::``, ``postgresql:/host``) is
    refused rather than taken as a file name to create.
    """
    text = url or os.environ.get("PROBE_DB") or str(default_path())
    if "://" not in text:
        if _URL_LIKE.match(text) and not Path(text).exists():
            raise UsageError(
                f"invalid database URL or path: {_mask(text)} "
                "(a URL needs scheme://; a file name with ':' must start with ./)"
            )
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
    """An engine plus the knowledge to explain its failures in one line.

    ``readonly``: the database must exist, nothing is created, and a SQLite
    file that this process cannot write (a read-only mount, an archived copy,
    someone else's folder) is opened read-only (``mode=ro``, or
    ``immutable=1`` when SQLite cannot even create its shared-memory file
    there).  ``writable`` says which one it got.
    """

    def __init__(
        self,
        url: URL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        *,
        readonly: bool = False,
        existing: bool = False,
    ) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self.backend = url.get_backend_name()
        self.display = url.render_as_string(hide_password=True)
        self.writable = True
        self.created = False  # a new SQLite file was created by this open
        if self.backend == "sqlite":
            path = self.sqlite_path
            if path is not None and readonly:
                self._check_readable(path)
                self.writable = _can_write(path)
            elif path is not None:
                if existing:  # a command with nothing to do on a new file: a typo, say so
                    self._check_readable(path)
                self.created = self._prepare_sqlite_file(path)
            self.engine = _sqlite_engine(url, busy_timeout, self.writable)
        else:
            self.engine = create_engine(
                url, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}, pool_pre_ping=True
            )

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for a server, ``:memory:`` or a ``file:`` URI."""
        database = self.url.database or ""
        if not self.is_sqlite or database in ("", ":memory:") or database.startswith("file:"):
            return None
        return Path(database)

    @staticmethod
    def _check_readable(path: Path) -> None:
        if not path.exists():
            raise NoDatabase(path)
        if not path.is_file():
            raise StorageError(f"cannot read database {path}: not a file")
        if not os.access(path, os.R_OK):
            raise StorageError(f"cannot read database {path}: permission denied")

    def _prepare_sqlite_file(self, path: Path) -> bool:
        """Create the file (mode 0600) if it is missing; True when it was.

        Only the default location gets its missing folders created: a
        mistyped ``--db`` must not leave a tree of folders behind.
        """
        directory = path.parent
        if path.exists():
            _repair_sidecars(path)
            return False
        if not directory.exists() and path == default_path():
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
            except OSError as exc:
                raise StorageError(
                    f"cannot create database {path}: cannot create {directory} ({exc.strerror})"
                ) from None
        if not directory.is_dir():
            existing = next(p for p in directory.parents if p.exists())
            problem = f"folder {directory} does not exist"
            if directory.exists() or not existing.is_dir():
                problem = f"{directory if directory.exists() else existing} is not a directory"
            raise StorageError(f"cannot create database {path}: {problem}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        except FileExistsError:  # created by another process meanwhile
            return False
        except OSError as exc:
            raise StorageError(f"cannot create database {path}: {exc.strerror}") from None
        os.close(fd)
        return True

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
        failing when it upgrades a read lock.  A lock wait that ended early
        is retried, but never past the busy timeout: a locked database costs
        one timeout, not three.
        """
        give_up = time.monotonic() + self.busy_timeout  # the figure the message names
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(probe_write=True)
                    with conn.begin():
                        return work(conn)
            except sa_exc.OperationalError as exc:
                retry = self.is_sqlite and _is_locked(exc) and time.monotonic() < give_up
                if attempt < WRITE_ATTEMPTS and retry:
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
            blocker = _unwritable(Path(path)) if self.sqlite_path is not None else None
            return f"cannot write database {path}: {blocker or 'it is read-only'}"
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


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _unwritable(path: Path) -> str | None:
    """Which of the database's files (or its folder) this process cannot write."""
    if not os.access(path, os.W_OK):
        return f"{path} is read-only"
    for sidecar in _sidecars(path):
        if sidecar.exists() and not os.access(sidecar, os.W_OK):
            return f"{sidecar} is read-only (chmod it like {path.name}, or remove it)"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its folder {path.parent} is not writable"
    return None


def _can_write(path: Path) -> bool:
    return _unwritable(path) is None and os.statvfs(path.parent).f_flag & os.ST_RDONLY == 0


def _repair_sidecars(path: Path) -> None:
    """Give -wal/-shm the database's write permission back.

    SQLite creates them with the database file's mode: opened while the file
    was read-only, they stay read-only after a ``chmod`` of the file itself,
    and every write then fails.  Only files this user owns are touched.
    """
    try:
        mode = path.stat().st_mode & 0o666
    except OSError:
        return
    if not os.access(path, os.W_OK):
        return
    for sidecar in _sidecars(path):
        try:
            info = sidecar.stat()
            if info.st_uid == os.geteuid() and not os.access(sidecar, os.W_OK):
                os.chmod(sidecar, mode)
                log.warning("%s was read-only; gave it the mode of %s", sidecar, path.name)
        except OSError:
            continue


def _sqlite_engine(url: URL, busy_timeout: float, writable: bool = True) -> Engine:
    connect_args: dict[str, Any] = {"timeout": busy_timeout}
    if not writable:
        path = str(url.database)
        uri = f"file:{quote(path)}?mode=ro"
        if _needs_immutable(Path(path)):
            uri = f"file:{quote(path)}?immutable=1"
        url = url.set(database=uri, query={"uri": "true"})
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event own transactions (pysqlite's own
        # implicit BEGIN would make BEGIN IMMEDIATE and transactional DDL
        # impossible).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if writable:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("probe_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _needs_immutable(path: Path) -> bool:
    """Whether SQLite cannot open ``path`` even with ``mode=ro``.

    That happens to a WAL database whose folder cannot take the -shm file (a
    read-only mount).  ``immutable=1`` then reads the main file only; what is
    still in a -wal file there is not seen, and the user is told so.
    """
    import sqlite3

    try:
        probe = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
        return False
    except sqlite3.Error:
        pass
    wal = _sidecars(path)[0]
    if wal.exists() and wal.stat().st_size > 0:
        log.warning(
            "%s cannot be read here (read-only folder): the newest measurements may be missing",
            wal,
        )
    return True
