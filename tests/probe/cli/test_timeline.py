from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collectors.ooni import convert
from storage.store import Store
from tests.collectors.test_ooni import accessible, dns_blocked, tls_reset


def probe(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROBE_DB": str(db)}
    return subprocess.run(
        [sys.executable, "-m", "probe", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_timeline_commands(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "date,country,platform,kind,title,source\n"
        "2024-03-01,PK,x,court,fine,src\n"
        "2024-03-02,PK,x,nope,t,s\n"
        "03/03/2024,PK,x,court,t,s\n"
    )
    result = probe("timeline", "import", str(bad), db=db)
    assert result.returncode == 2
    assert "line 3: unknown kind 'nope'" in result.stderr
    assert "line 4: bad date" in result.stderr
    listed = probe("timeline", "list", "--country", "PK", db=db)
    assert listed.returncode == 4 and "no database at" in listed.stderr  # reading creates none
    Store.open(str(db)).close()
    listed = probe("timeline", "list", "--country", "PK", db=db)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 21  # built-in only
    added = probe(
        "timeline", "add", "--date", "2024-03-01", "--country", "pk", "--platform", "x",
        "--kind", "court", "--title", "A hearing", "--source", "Dawn", db=db,
    )  # fmt: skip
    assert added.returncode == 0 and "added" in added.stdout
    exported = probe("timeline", "export", "--platform", "x", db=db)
    assert "2024-03-01,,PK,x,court,A hearing,Dawn,,medium" in exported.stdout


def test_report_command_writes_html_and_png(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with Store.open(str(db)) as store:
        store.import_measurements(
            convert([("t", d) for d in (accessible(), dns_blocked(), tls_reset())])
        )
    html, png = tmp_path / "r.html", tmp_path / "r.png"
    result = probe(
        "report", "--country", "PK", "--platform", "x", "--since", "2024-02-01",
        "-o", str(html), "--png", str(png), db=db,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ooni:AS17557" in result.stdout and "Agreement" in result.stdout
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_report_per_domain_and_png_name(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with Store.open(str(db)) as store:
        store.import_measurements(
            convert([("t", d) for d in (accessible(), dns_blocked(), tls_reset())])
        )
    one = probe("report", "--domain", "x.com", "--since", "2024-02-01", db=db)
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("Reachability report: x.com (")
    assert "Which endpoints were blocked when" in one.stdout
    wrong = probe("report", "--png", str(tmp_path / "plot.html"), db=db)
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr == (
        "probe: --png writes a PNG image: give a name ending in .png, not 'plot.html'\n"
    )
    empty = probe("report", "--since", "2017-11-01", "--until", "2017-12-01", db=db)
    assert empty.returncode == 0, empty.stderr
    assert "No measurements match." in empty.stdout and "2017-11-25" in empty.stdout


def test_a_bad_header_is_not_counted_as_bad_rows(tmp_path: Path) -> None:
    """A CSV of one event whose header lacked four columns ended in '4 bad row(s),
    nothing imported': the rows were never read, the header had four problems."""
    db = tmp_path / "db.sqlite"
    short = tmp_path / "short.csv"
    short.write_text("date,country\n2026-01-01,PK\n")
    result = probe("timeline", "import", str(short), db=db)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[:-1] == [
        f"{short}: line 1: missing column {c!r}" for c in ("platform", "kind", "title", "source")
    ]
    assert lines[-1] == (
        f"probe: {short}: 4 problem(s) in the header row, nothing imported; "
        "first: line 1: missing column 'platform'"
    )


def test_a_report_until_a_day_names_that_day_last(tmp_path: Path) -> None:
    """`probe report --since 2024-02-01 --until 2024-02-29` (the whole of February)
    was headed '2024-02-01 00:00 .. 2024-03-01 00:00', as if it ran into March."""
    db = tmp_path / "db.sqlite"
    with Store.open(str(db)) as store:
        store.import_measurements(convert([("t", accessible())]))
    result = probe("report", "--since", "2024-02-01", "--until", "2024-02-29", db=db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "Reachability report: all platforms, 2024-02-01 .. 2024-02-29"
    )
    timed = probe("report", "--until", "2024-02-17T22:00:00Z", db=db)
    assert timed.stdout.splitlines()[0] == (
        "Reachability report: all platforms, - .. before 2024-02-17 22:00"
    )
