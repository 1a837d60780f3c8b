"""Backends for the storage tests: a SQLite file and a real PostgreSQL.

PostgreSQL comes from $PROBE_TEST_PG_URL, or else a throwaway cluster that
listens only on a unix socket in a temporary directory (needs root and the
Debian postgresql packages).  Without either the PostgreSQL cases skip,
except under CI, where a missing backend is a failure.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_counter = itertools.count()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run under CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A server URL without a database name (``postgresql+psycopg://user@/?host=...``)."""
    url = os.environ.get("PROBE_TEST_PG_URL")
    if url:
        yield url
        return
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        _unavailable("no $PROBE_TEST_PG_URL and no /usr/lib/postgresql/*/bin/initdb")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        _unavailable("starting a throwaway cluster needs root (runuser -u postgres)")
    bindir = Path(binaries[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="probe-pg-"))
    shutil.chown(base, "postgres", "postgres")
    data = base / "data"

    def as_postgres(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    try:
        as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        options = f"-c listen_addresses='' -c unix_socket_directories={base} -c fsync=off"
        as_postgres(
            str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"),
            "-w", "start",
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"throwaway cluster did not start ({exc})")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={base}"
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    import psycopg
    from sqlalchemy import make_url

    server = make_url(pg_server)
    name = f"probe_test_{os.getpid()}_{next(_counter)}"
    conninfo = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs against both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'probe.db'}"
    return str(request.getfixturevalue("pg_url"))
