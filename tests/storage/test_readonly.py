"""Reading never needs write access, and never creates anything.

Every read command is run as a user would: the real ``probe`` in a child
process, on a database behind a read-only bind mount (an archived copy, a
probe's SD card) and in a folder the user cannot write (as ``nobody``).
Writing commands create only the database file, and say so; mistyped paths
create nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import Store
from tests.storage import factories as F

ROOT = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def probe(
    *args: str, prefix: tuple[str, ...] = (), home: Path | None = None
) -> tuple[int, str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(home or tempfile.gettempdir()),
    }
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "probe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder others may enter (tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="reachprobe-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def archived(folder: Path) -> tuple[Path, str]:
    """A database with two measurements, closed cleanly (no -wal/-shm), readable by all."""
    db = folder / "probe.db"
    with Store.open(str(db)) as store:
        store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE)
        kept = store.save(F.accessible(started_at=F.START.replace(day=18)), F.ACCESSIBLE, F.VANTAGE)
    db.chmod(0o644)
    assert sorted(os.listdir(folder)) == ["probe.db"]
    return db, kept


def read_commands(db: Path, measurement: str, out: Path) -> list[tuple[list[str], str]]:
    """(arguments, text the output must contain) for every command that only reads."""
    d = ["--db", str(db)]
    return [
        (["measurements", *d], measurement[:8]),
        (["measurements", *d, "--json"], measurement),
        (["show", measurement[:8], *d], measurement),
        (["export", "csv", *d], measurement),
        (["export", "jsonl", *d], measurement),
        (["report", *d, "--country", "PK"], "Brief restorations"),  # a built-in event
        (["timeline", "list", *d], "NetBlocks"),
        (["timeline", "export", *d], "NetBlocks"),
        (["db", "current", *d], "up to date"),
        (["collector", "vantage", "list", *d, "--json"], "[]"),
        (["export", "csv", *d, "-o", str(out / "out.csv")], ""),
    ]


_DRIVER = """
import contextlib, io, json, sys
import probe.cli
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["probe", *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            probe.cli.main()
        except SystemExit as done:
            code = done.code or 0
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def probe_many(commands: list[list[str]], prefix: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """Run several ``probe`` commands in one child process (as probe.cli.main, one by one)."""
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _DRIVER, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": "/"},
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return [(int(c), o, e) for c, o, e in json.loads(done.stdout)]


def _check_all(db: Path, measurement: str, out: Path, prefix: tuple[str, ...]) -> None:
    commands = read_commands(db, measurement, out)
    results = probe_many([args for args, _ in commands], prefix)
    for (args, expected), (code, stdout, stderr) in zip(commands, results, strict=True):
        assert code == 0, (args, stderr)
        assert expected in stdout, (args, stdout[:300], stderr)
        assert "Traceback" not in stderr
    assert measurement in (out / "out.csv").read_text()


def test_every_read_command_works_on_a_read_only_mount(
    archived: tuple[Path, str], folder: Path, tmp_path: Path
) -> None:
    _, measurement = archived
    mount = tmp_path / "mnt"
    mount.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    # A private mount namespace per command: the bind mount dies with it.
    script = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", script, "sh", str(folder), str(mount))
    _check_all(mount / "probe.db", measurement, out, prefix)
    assert sorted(os.listdir(folder)) == ["probe.db"]  # nothing created beside it


def test_a_read_only_mount_with_a_leftover_wal_still_reads_and_says_what_it_misses(
    archived: tuple[Path, str], folder: Path, tmp_path: Path
) -> None:
    _, measurement = archived
    (folder / "probe.db-wal").write_bytes(b"\0" * 100)  # what a crash leaves (no -shm)
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", script, "sh", str(folder), str(mount))
    code, out, err = probe("measurements", "--db", str(mount / "probe.db"), prefix=prefix)
    assert code == 0 and measurement[:8] in out
    assert "newest measurements may be missing" in err


def test_every_read_command_works_in_a_folder_the_user_cannot_write(
    archived: tuple[Path, str], folder: Path
) -> None:
    db, measurement = archived
    out = Path(tempfile.mkdtemp(prefix="reachprobe-out-"))
    os.chown(out, 65534, 65534)
    try:
        _check_all(db, measurement, out, tuple(NOBODY))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert sorted(os.listdir(folder)) == ["probe.db"]


def test_a_database_once_read_only_is_writable_again_after_chmod(folder: Path) -> None:
    """SQLite gives -shm the database file's mode: opened while it was 0444,
    the -shm stayed 0444 after ``chmod 644 probe.db`` and every write failed
    naming the wrong file."""
    os.chown(folder, 65534, 65534)
    db = folder / "probe.db"
    assert probe("db", "upgrade", "--db", str(db), prefix=tuple(NOBODY))[0] == 0
    db.chmod(0o444)
    holder = subprocess.Popen(  # a reader keeps the -shm alive, as a daemon would
        [*NOBODY, sys.executable, "-c", _HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        shm = folder / "probe.db-shm"
        assert shm.exists() and shm.stat().st_mode & 0o222 == 0
        db.chmod(0o644)
        code, out, err = probe(*ADD_EVENT, "--db", str(db), prefix=tuple(NOBODY))
        assert code == 0, err
        assert "added" in out
    finally:
        holder.kill()
        holder.wait()


ADD_EVENT = ["timeline", "add", "--date", "2024-01-01", "--country", "PK", "--platform", "x"]
ADD_EVENT += ["--kind", "other", "--title", "a write", "--source", "test"]

_HOLD = """
import sqlite3, sys, time
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
c.execute("BEGIN"); c.execute("SELECT count(*) FROM measurements").fetchall()
print("open", flush=True); time.sleep(60)
"""


def test_a_read_only_database_names_the_file_that_blocks_writing(folder: Path) -> None:
    os.chown(folder, 65534, 65534)
    db = folder / "probe.db"
    assert probe("db", "upgrade", "--db", str(db), prefix=tuple(NOBODY))[0] == 0
    db.chmod(0o444)
    code, _, err = probe(*ADD_EVENT, "--db", str(db), prefix=tuple(NOBODY))
    assert code == 4
    assert err.strip() == f"probe: cannot write database {db}: {db} is read-only"


READERS = [
    ["measurements"],
    ["show", "12345678"],
    ["export", "csv"],
    ["export", "jsonl"],
    ["report"],
    ["timeline", "list"],
    ["timeline", "export"],
    ["db", "current"],
    ["collector", "vantage", "list"],  # said "no registered vantages" and left a file behind
]


def test_reading_commands_never_create_a_database(folder: Path) -> None:
    db = folder / "new" / "probe.db"
    commands = [[*a, "--db", str(db)] for a in READERS]
    commands += [[*a, "--db", str(folder / "probe.db")] for a in READERS]
    for args, (code, _, err) in zip(commands, probe_many(commands, ()), strict=True):
        assert code == 4, (args, err)
        assert err.strip() == (
            f"probe: no database at {args[-1]} (nothing stored there yet; check --db)"
        ), args
    assert os.listdir(folder) == []


def test_mistyped_paths_create_nothing(folder: Path) -> None:
    code, _, err = probe("import", "jsonl", "-", "--db", "/nonexistent/dir/x.db")
    assert code == 4
    missing = "folder /nonexistent/dir does not exist"
    assert err.strip() == f"probe: cannot create database /nonexistent/dir/x.db: {missing}"
    assert not Path("/nonexistent").exists()

    code, _, err = probe("import", "jsonl", "-", "--db", "garbage:::")
    assert code == 2
    assert "invalid database URL or path: garbage:::" in err
    assert not Path("/garbage:::").exists()


def test_writing_commands_create_only_the_file_and_say_so(folder: Path) -> None:
    db = folder / "probe.db"
    code, out, err = probe("db", "upgrade", "--db", str(db))
    assert code == 0
    assert f"probe: created a new database sqlite:///{db}" in err
    assert "(upgraded from empty)" in out
    assert db.stat().st_mode & 0o777 == 0o600
    code, out, err = probe("db", "upgrade", "--db", str(db))
    assert code == 0 and "already up to date" in out and "created" not in err
    collector = folder / "collector.db"
    code, out, err = probe("collector", "vantage", "add", "lahore", "--db", str(collector))
    assert code == 0 and f"probe: created a new database sqlite:///{collector}" in err
    assert out.startswith("registered vantage lahore\n")


def test_a_network_with_a_line_break_is_refused_before_the_database(folder: Path) -> None:
    """The dashboard and `vantage list` show the ISP's name on the vantage's line."""
    collector = folder / "collector.db"
    add = ("collector", "vantage", "add", "lahore", "--db", str(collector))
    code, out, err = probe(*add, "--network", "PTCL\nKarachi")
    assert (code, out) == (2, ""), err
    assert err == "probe: --network holds a line break, tab or other control character\n"
    assert not collector.exists()
    code, out, _ = probe(*add, "--network", "  PTCL ")
    assert code == 0 and out.startswith("registered vantage lahore (PTCL)\n"), out


def test_upload_with_a_mistyped_db_creates_nothing_and_exits_4(folder: Path) -> None:
    db = folder / "typo.db"
    code, out, err = probe(
        "upload", "--collector", "http://127.0.0.1:9", "--token", "t", "--db", str(db)
    )
    assert code == 4 and out == "", err
    assert err.strip() == f"probe: no database at {db} (nothing stored there yet; check --db)"
    assert os.listdir(folder) == []
