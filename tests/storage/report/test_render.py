from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from collectors.timeline import builtin_events
from storage.records import TimelineEvent
from storage.report.html import render_html
from storage.report.plot import render_png
from storage.report.summary import build_report, checks_from_rows
from storage.store import Store
from storage.timeline import ReportedIndex
from tests.storage.report.history import history

PNG = b"\x89PNG\r\n\x1a\n"


def hostile_events() -> list[TimelineEvent]:
    events = builtin_events()
    evil = TimelineEvent(
        date=dt.date(2024, 3, 3),
        country="PK",
        platform="x",
        kind="statement",
        title="<script>alert(1)</script>",
        source='"><img src=x onerror=alert(2)>',
        url="javascript:alert(3)",
    )
    good = dataclasses.replace(
        evil, title="linked", source="Dawn", url="https://example.org/a?b=1&c=2"
    )
    return [*events, evil, good]


def test_png_and_html(tmp_path: Path) -> None:
    events = hostile_events()
    checks = checks_from_rows(history(step=dt.timedelta(hours=6)), ReportedIndex(events))
    report = build_report(checks, events, country="PK", platform="x")
    png = render_png(report)
    assert png.startswith(PNG) and len(png) > 20_000
    (tmp_path / "report.png").write_bytes(png)
    page = render_html(report, png)
    assert "data:image/png;base64," in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "onerror=alert(2)>" not in page
    assert 'href="javascript' not in page
    assert 'href="https://example.org/a?b=1&amp;c=2"' in page
    assert "pk-nayatel" in page and "AS17557 PTCL" in page
    assert "http://" not in page.replace('href="https://example.org', "")  # nothing external
    assert "Sindh High Court" in page


def test_html_compares_the_vantages_as_the_text_does() -> None:
    """`probe report -o` left out the ISP x endpoint table, the status strips and
    the flips, the views that compare ISPs, although the terminal showed them."""
    from storage.report.vantages import compare, render_text

    events = builtin_events()
    checks = checks_from_rows(history(step=dt.timedelta(hours=6)), ReportedIndex(events))
    report = build_report(checks, events, country="PK", platform="x")
    comparison = compare(checks, report.events)
    page = render_html(report, None, comparison=comparison)
    for heading in ("Comparing vantages", "ISP x endpoint", "Intermittency"):
        assert f">{heading}" in page and heading in render_text(comparison)
    assert "<td>AS45669 Jazz</td><td>x.com</td>" in page
    strip = next(line for line in render_text(comparison).splitlines() if "pk-jazz" in line)
    assert strip.strip() in page  # the same strip as in the terminal
    assert "Comparing vantages" not in render_html(report, None)


def test_empty_report_renders() -> None:
    report = build_report([], builtin_events())
    assert render_png(report).startswith(PNG)
    assert "No measurements match" in render_html(report, None)


def test_reports_without_matplotlib_fail_in_one_line(tmp_path: Path) -> None:
    """Should matplotlib be missing (a broken install), the terminal
    summary still works and -o says what to install, in one line."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None; "  # as if it were not installed
        "sys.argv = ['probe', 'report', '--db', sys.argv[1], '-o', sys.argv[2]]; "
        "from probe.cli import main; main()"
    )
    db = f"sqlite:///{tmp_path / 'p.db'}"
    Store.open(db).close()
    result = subprocess.run(
        [sys.executable, "-c", code, db, str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "probe: the PNG and HTML reports need matplotlib (a reachprobe dependency): "
        "pip install matplotlib\n"
    )
    assert "Reachability report" in result.stdout
