"""Backends for the storage tests: a SQLite file and a real PostgreSQL.

PostgreSQL comes from $PROBE_TEST_PG_URL, or else a throwaway cluster that
listens only on a unix socket in a temporary directory (needs root and the
Debian postgresql packages).  Without either the PostgreSQL cases skip,
except under CI, where a missing backend is a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.pgcluster import Unavailable, throwaway_cluster

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
    try:
        with throwaway_cluster() as started:
            yield started
    except Unavailable as exc:
        _unavailable(str(exc))


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
