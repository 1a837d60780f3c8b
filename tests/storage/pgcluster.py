"""A throwaway PostgreSQL cluster on a unix socket in a temporary directory.

Used by the test fixtures (tests/storage/conftest.py, ``fsync=off``) and the
collector benchmark (``fsync`` on, as a real deployment).  Needs root and the
Debian postgresql packages; :class:`Unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class Unavailable(Exception):
    pass


@contextlib.contextmanager
def throwaway_cluster(*, fsync: bool = False) -> Iterator[str]:
    """A server URL without a database name (``postgresql+psycopg://postgres@/postgres?host=...``)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        raise Unavailable("no $PROBE_TEST_PG_URL and no /usr/lib/postgresql/*/bin/initdb")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        raise Unavailable("starting a throwaway cluster needs root (runuser -u postgres)")
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
        options = f"-c listen_addresses='' -c unix_socket_directories={base}"
        options += "" if fsync else " -c fsync=off"
        as_postgres(
            str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"),
            "-w", "start",
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise Unavailable(f"throwaway cluster did not start ({exc})") from None
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={base}"
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def pg_ctl(url: str, *args: str) -> None:
    """Run ``pg_ctl ARGS`` (e.g. ``stop -m fast``, ``start``) on the throwaway cluster
    behind ``url`` (a database URL from it), with the options it was started with.

    Raises :class:`Unavailable` for a server that is not a throwaway cluster.
    """
    from sqlalchemy import make_url

    if os.environ.get("PROBE_TEST_PG_URL"):
        raise Unavailable("stopping and starting the server needs the throwaway cluster")
    base = Path(str(make_url(url).query["host"]))
    binary = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    options = f"-c listen_addresses='' -c unix_socket_directories={base} -c fsync=off"
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(binary), "-D", str(base / "data"), "-o", options,
         "-l", str(base / "log"), "-w", *args],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
