"""The data commands (probe/cli/data.py), run through probe.cli.main for real exit codes."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
import types
from pathlib import Path

import pytest
import typer

import probe.cli
from probe.cli import data
from probe.verdict import Status, Verdict
from storage import Store
from storage.migrate import SCHEMA_HEAD
from tests.storage import factories as F


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    data.register(app)
    monkeypatch.setattr(probe.cli, "app", app)
    monkeypatch.setattr(probe.cli, "_register", lambda: None)
    monkeypatch.setattr(sys, "argv", ["probe", *args])
    with pytest.raises(SystemExit) as done:
        probe.cli.main()
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path / 'probe.db'}"
    with Store.open(url) as store:
        ids = [
            store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE),
            store.save(F.accessible(started_at=F.START.replace(day=18)), F.ACCESSIBLE, F.VANTAGE),
        ]
    return url, ids


def test_measurements_table_and_json(capsys, monkeypatch, db) -> None:  # type: ignore[no-untyped-def]
    url, (blocked, fine) = db
    code, out, _ = run(capsys, monkeypatch, "measurements", "--db", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STARTED", "(UTC)"]
    assert lines[1].startswith(fine[:8]) and lines[2].startswith(blocked[:8])
    assert (
        "dns.injection,tls.reset,http.blockpage" in lines[2] and "tls:connection_reset" in lines[2]
    )

    code, out, _ = run(
        capsys, monkeypatch, "measurements", "--db", url, "--verdict", "blocked", "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [blocked]
    assert (
        rows[0]["vantage"]["asn"] == 17557 and rows[0]["started_at"] == "2024-02-17T17:05:00.123Z"
    )

    monkeypatch.setenv("PROBE_DB", url)
    code, out, _ = run(capsys, monkeypatch, "measurements", "--until", "2024-02-17", "--json")
    assert [r["id"] for r in json.loads(out)] == [blocked]  # a bare --until date includes the day
    code, out, _ = run(
        capsys, monkeypatch, "measurements", "--since", "2024-02-18T00:00:00Z", "--json"
    )
    assert [r["id"] for r in json.loads(out)] == [fine]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "probe: --since must be YYYY-MM-DD or an RFC 3339 time"),
        (["--until", "2024-13-01"], "probe: --until must be YYYY-MM-DD"),
        (["--verdict", "censored"], "probe: --verdict must be one of accessible, blocked"),
        (["--country", "Pakistan"], "probe: --country must be a two-letter ISO code"),
        (["--limit", "0"], "probe: "),
        (  # swapped dates said "no measurements match", as if there were none
            ["--since", "2024-03-01", "--until", "2024-02-17"],
            "probe: --since 2024-03-01 is not before --until 2024-02-17: nothing can match",
        ),
    ],
)
def test_bad_filters_exit_2_in_one_line(capsys, monkeypatch, db, args, message) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, monkeypatch, "measurements", "--db", db[0], *args)
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1
    assert out == ""


def test_show(capsys, monkeypatch, db) -> None:  # type: ignore[no-untyped-def]
    url, (blocked, _) = db
    code, out, _ = run(capsys, monkeypatch, "show", blocked[:8], "--db", url)
    assert code == 0
    assert f"measurement  {blocked}" in out
    assert "verdict      blocked: dns.injection, tls.reset, http.blockpage (trigger: sni)" in out
    assert "dns          vantage A x.com: 198.51.100.7 (2 replies)" in out
    assert "endpoint     198.51.100.7 port 443: tcp ok 41 ms; tls connection_reset" in out

    code, out, _ = run(capsys, monkeypatch, "show", blocked, "--db", url, "--json")
    record = json.loads(out)
    assert record["schema"] == "probe.measurement/1" and record["id"] == blocked
    assert record["observations"]["endpoints"][0]["tls"]["failure"] == "connection_reset"

    code, _, err = run(capsys, monkeypatch, "show", "00000000", "--db", url)
    assert (code, err) == (2, "probe: no measurement with id 00000000\n")


def test_export_csv_and_jsonl_then_import(capsys, monkeypatch, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, ids = db
    csv_path = tmp_path / "out.csv"
    code, out, _ = run(capsys, monkeypatch, "export", "csv", "-o", str(csv_path), "--db", url)
    assert (code, out) == (0, "")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ids  # oldest first
    assert not (tmp_path / "out.csv.partial").exists()

    code, out, _ = run(capsys, monkeypatch, "export", "csv", "--db", url, "--platform", "x")
    assert code == 0 and len(out.splitlines()) == 2

    jsonl_path = tmp_path / "out.jsonl"
    code, _, _ = run(capsys, monkeypatch, "export", "jsonl", "-o", str(jsonl_path), "--db", url)
    assert code == 0 and len(jsonl_path.read_text().splitlines()) == 2

    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    code, out, _ = run(capsys, monkeypatch, "import", "jsonl", str(jsonl_path), "--db", copy)
    assert (code, out) == (0, "imported 2 measurement(s) (0 already present)\n")
    code, out, _ = run(capsys, monkeypatch, "import", "jsonl", str(jsonl_path), "--db", copy)
    assert out == "imported 0 measurement(s) (2 already present)\n"

    code, _, err = run(
        capsys, monkeypatch, "import", "jsonl", str(tmp_path / "none.jsonl"), "--db", copy
    )
    assert code == 2 and err.startswith("probe: cannot read") and err.count("\n") == 1


def test_reclassify(capsys, monkeypatch, db) -> None:  # type: ignore[no-untyped-def]
    url, (blocked, _) = db
    fake = types.ModuleType("probe.classify")
    verdict = Verdict(Status.INCONCLUSIVE, classifier_version="9")
    fake.classify = lambda obs, fingerprints=None: verdict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "probe.classify", fake)
    code, out, _ = run(capsys, monkeypatch, "reclassify", "--db", url, "--verdict", "blocked")
    assert (code, out) == (0, "examined 1 measurement(s); 1 verdict(s) changed\n")
    with Store.open(url) as store:
        got = store.get(blocked)
    assert got is not None and got.verdict.status == Status.INCONCLUSIVE


def test_db_commands(capsys, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, err = run(capsys, monkeypatch, "db", "current", "--db", url)
    assert (code, out) == (4, "")  # reading creates nothing
    assert err.startswith(f"probe: no database at {tmp_path / 'new.db'} (nothing stored")
    code, out, err = run(capsys, monkeypatch, "db", "upgrade", "--db", url)
    assert (code, out) == (0, f"{url}: schema {SCHEMA_HEAD} (upgraded from empty)\n")
    assert err == f"probe: created a new database {url}\n"
    sqlite3.connect(tmp_path / "empty.db").close()  # a database without our tables
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    code, out, _ = run(capsys, monkeypatch, "db", "current", "--db", empty)
    assert (code, out) == (0, f"{empty}: schema empty (this release's is {SCHEMA_HEAD})\n")
    code, out, _ = run(capsys, monkeypatch, "db", "upgrade", "--db", url)
    assert out == f"{url}: schema {SCHEMA_HEAD} (already up to date)\n"
    code, out, _ = run(capsys, monkeypatch, "db", "current", "--db", url)
    assert out == f"{url}: schema {SCHEMA_HEAD} (up to date)\n"


def test_storage_errors_exit_4_in_one_line(capsys, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "probe.db"
    bad.write_bytes(b"garbage" * 200)
    for args in (["measurements"], ["export", "csv"], ["db", "current"], ["show", "abcdef12"]):
        code, _, err = run(capsys, monkeypatch, *args, "--db", str(bad))
        assert code == 4, args
        assert err == f"probe: cannot read database {bad}: damaged or not a SQLite database\n"
    code, _, err = run(
        capsys, monkeypatch, "measurements", "--db", "postgresql://u:pw@127.0.0.1:1/p"
    )
    assert (code, err) == (
        4,
        "probe: cannot connect to PostgreSQL at 127.0.0.1:1: connection refused\n",
    )


IS_A_DIRECTORY = "it is a directory (give a file name)"


def test_output_to_a_directory_is_one_line_even_verbose(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    url, _ = db
    for command in (["export", "csv"], ["export", "jsonl"], ["timeline", "export"], ["report"]):
        for verbose in ([], ["-v"]):
            args = [*verbose, *command, "--db", url, "-o", str(tmp_path)]
            done = subprocess.run(
                [sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 2, (args, done.stderr)
            errors = [line for line in done.stderr.splitlines() if line.startswith("probe:")]
            assert errors == [
                f"probe: cannot write {tmp_path}: it is a directory (give a file name)"
            ]
            assert "Traceback" not in done.stderr


def test_output_in_a_missing_folder_is_refused_before_any_work(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`probe report --png missing/plot.png` printed the whole report, then failed:
    the one line saying the plot was not written scrolled by unseen."""
    import subprocess

    url, _ = db
    missing = tmp_path / "missing"
    for command in (["export", "csv", "-o"], ["timeline", "export", "-o"], ["report", "--png"]):
        target = missing / ("plot.png" if "--png" in command else "out.csv")
        args = [*command, str(target), "--db", url]
        done = subprocess.run(
            [sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr == f"probe: cannot write {target}: folder {missing} does not exist\n"
        assert done.stdout == "", args
    assert not missing.exists()


def test_export_never_writes_through_a_planted_partial_link(  # type: ignore[no-untyped-def]
    capsys, monkeypatch, db, tmp_path
) -> None:
    url, (blocked, _) = db
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.partial").symlink_to(victim)
    code, _, _ = run(capsys, monkeypatch, "export", "csv", "--db", url, "-o", str(out))
    assert code == 0
    assert victim.read_text() == "precious\n"
    assert blocked in out.read_text() and not out.is_symlink()
    assert not [
        p for p in tmp_path.iterdir() if p.name.endswith(".partial") and p.name != "out.csv.partial"
    ]


def test_limit_means_the_newest_in_listings_and_exports(  # type: ignore[no-untyped-def]
    capsys, monkeypatch, tmp_path
) -> None:
    url = f"sqlite:///{tmp_path / 'probe.db'}"
    with Store.open(url) as store:
        ids = [
            store.save(F.accessible(started_at=F.START.replace(day=day)), F.ACCESSIBLE, F.VANTAGE)
            for day in (18, 19, 20, 21, 22)
        ]
    newest = ids[-2:]  # days 21 and 22
    _, out, _ = run(capsys, monkeypatch, "measurements", "--db", url, "--limit", "2", "--json")
    assert [r["id"] for r in json.loads(out)] == newest[::-1]  # newest first
    _, out, _ = run(capsys, monkeypatch, "export", "jsonl", "--db", url, "--limit", "2")
    assert [json.loads(line)["id"] for line in out.splitlines()] == newest  # exported oldest first
    _, out, _ = run(capsys, monkeypatch, "export", "csv", "--db", url, "--limit", "2")
    assert [r["id"] for r in csv.DictReader(out.splitlines())] == newest
    _, out, _ = run(capsys, monkeypatch, "export", "csv", "--db", url, "--limit", "9")
    assert [r["id"] for r in csv.DictReader(out.splitlines())] == ids  # fewer than N: all


def test_a_full_disk_under_the_output_is_one_line_not_a_bug(db) -> None:  # type: ignore[no-untyped-def]
    """`probe export csv > out.csv` on a full disk said 'internal error ...; rerun
    with -v and report it' (exit 70): a full disk is the user's to free, not a bug."""
    import subprocess

    url, _ = db
    for args in (["export", "csv"], ["export", "jsonl"], ["measurements"], ["explain"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "probe",
                    *args,
                    *(["--db", url] if args != ["explain"] else []),
                ],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr == "probe: cannot write the output: No space left on device\n", args


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_to_a_fifo_or_device_writes_into_it(db, tmp_path, fmt) -> None:  # type: ignore[no-untyped-def]
    """`probe export csv -o /dev/stdout` (or a FIFO, or /dev/full) replaced the
    device with a regular file when run as root, and said 'Permission denied'
    otherwise: the temporary file it renames is for regular files only."""
    import os
    import stat
    import subprocess

    url, (blocked, _) = db
    fifo = tmp_path / f"out.{fmt}"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there: open for write works
    try:
        done = subprocess.run(
            [sys.executable, "-m", "probe", "export", fmt, "--db", url, "-o", str(fifo)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
        assert blocked in os.read(reader, 1 << 16).decode()
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["probe.db", fifo.name])

    full = tmp_path / "full"  # /dev/full's twin: without the fix, only this one is replaced
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    done = subprocess.run(
        [sys.executable, "-m", "probe", "export", fmt, "--db", url, "-o", str(full)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stat.S_ISCHR(full.lstat().st_mode)
    assert (done.returncode, done.stderr) == (
        2,
        f"probe: cannot write {full}: No space left on device\n",
    )


def test_one_measurement_is_not_said_in_the_plural(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`probe import jsonl` of one record said 'imported 1 measurements', and `probe
    report` over it '1 checks from 1 vantage(s)' (and so did the HTML report)."""
    import subprocess

    url = f"sqlite:///{tmp_path / 'probe.db'}"
    with Store.open(url) as store:
        store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE)

    def probe(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    one = tmp_path / "one.jsonl"
    probe("export", "jsonl", "--db", url, "-o", str(one))
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    assert probe("import", "jsonl", str(one), "--db", copy) == (
        "imported 1 measurement(s) (0 already present)\n"
    )
    html = tmp_path / "report.html"
    text = probe("report", "--db", copy, "-o", str(html))
    assert text.splitlines()[1].startswith("1 check(s) from 1 vantage(s);")
    assert "; 1 check(s) from 1 vantage(s);" in html.read_text()


@pytest.mark.parametrize(
    "command",
    [["reclassify"], ["traces", "--relocate"], ["collector", "vantage", "revoke", "karachi"]],
)
def test_nothing_to_do_on_a_mistyped_db_creates_nothing(tmp_path, command) -> None:  # type: ignore[no-untyped-def]
    """`probe reclassify --db typo.db` made an empty database there and said 'examined
    0 measurement(s)'; `probe collector vantage revoke NAME --db typo.db` made one and
    said the vantage was not registered: a typo looked like an empty store."""
    import subprocess

    typo = tmp_path / "typo.db"
    done = subprocess.run(
        [sys.executable, "-m", "probe", *command, "--db", str(typo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (4, ""), done.stderr
    assert done.stderr == f"probe: no database at {typo} (nothing stored there yet; check --db)\n"
    assert not typo.exists()


def test_export_to_a_symlink_updates_the_file_it_points_to(tmp_path, db) -> None:  # type: ignore[no-untyped-def]
    """`probe export csv -o latest.csv`, latest.csv a link to the shared file: the
    link was replaced by a new file and the shared one kept its old rows."""
    import subprocess

    url, (blocked, _) = db
    shared = tmp_path / "share" / "latest.csv"
    shared.parent.mkdir()
    shared.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(shared)
    done = subprocess.run(
        [sys.executable, "-m", "probe", "export", "csv", "--db", url, "-o", str(link)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and blocked in shared.read_text()
    assert not [p for p in shared.parent.iterdir() if p.name.endswith(".partial")]
