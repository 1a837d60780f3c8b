"""storage.report.vantages: the ISP x endpoint table, status strips, flips, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from storage.records import TimelineEvent
from storage.report.summary import Check
from storage.report.vantages import compare, render_text, write_csv

T0 = dt.datetime(2024, 2, 17, 0, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
PTCL: dict[str, Any] = {"country": "PK", "asn": 17557, "network": "PTCL"}
JAZZ: dict[str, Any] = {"country": "PK", "asn": 24499, "network": "Jazz"}


def check(vantage: str, hours: float, verdict: str, domain: str = "x.com", **isp: Any) -> Check:
    methods = ("tls.reset",) if verdict == "blocked" else ()
    return Check(
        vantage=vantage, at=T0 + hours * H, verdict=verdict, methods=methods,
        domain=domain, platform="x", **isp,
    )  # fmt: skip


def sample() -> list[Check]:
    checks = []
    # PTCL blocks x.com on day 1 with two flips (B A B), steadily on day 2.
    for hour, verdict in ((1, "blocked"), (2, "accessible"), (3, "blocked"), (25, "blocked")):
        checks.append(check("lahore-ptcl", hour, verdict, **PTCL))
    # Jazz never blocks; one inconclusive check changes nothing.
    for hour, verdict in ((1, "accessible"), (2, "inconclusive"), (26, "accessible")):
        checks.append(check("karachi-jazz", hour, verdict, **JAZZ))
    # api.x.com: blocked on PTCL once.
    checks.append(check("lahore-ptcl", 4, "blocked", "api.x.com", **PTCL))
    return checks


def test_isp_by_endpoint_table_shows_who_blocks() -> None:
    comparison = compare(sample())
    cells = {(c.network, c.endpoint): c for c in comparison.cells}
    ptcl = cells[("AS17557 PTCL", "x.com")]
    assert (ptcl.checks, ptcl.blocked, ptcl.accessible) == (4, 3, 1)
    assert ptcl.blocked_share == 0.75 and ptcl.methods == (("tls.reset", 3),)
    assert ptcl.first_blocked == T0 + H and ptcl.last_blocked == T0 + 25 * H
    jazz = cells[("AS24499 Jazz", "x.com")]
    assert jazz.blocked_share == 0.0 and jazz.first_blocked is None and jazz.checks == 3
    assert cells[("AS17557 PTCL", "api.x.com")].blocked == 1
    assert ("AS24499 Jazz", "api.x.com") not in cells


def test_flips_count_disagreeing_consecutive_conclusive_checks_per_day() -> None:
    days = {(d.vantage, d.endpoint, d.day.day): d for d in compare(sample()).days}
    assert days[("lahore-ptcl", "x.com", 17)].flips == 2
    assert days[("lahore-ptcl", "x.com", 18)].flips == 0  # B after B
    assert days[("karachi-jazz", "x.com", 17)].flips == 0  # inconclusive is not a flip
    assert days[("karachi-jazz", "x.com", 18)].flips == 0


def test_text_shows_strips_table_and_intermittency() -> None:
    event = TimelineEvent(dt.date(2024, 2, 17), "PK", "x", "block", "X blocked", "test")
    text = render_text(compare(sample(), [event]))
    lines = text.splitlines()
    assert any(line.strip().startswith("lahore-ptcl (PK, AS17557, PTCL)") and "|~B|" in line
               for line in lines)  # fmt: skip
    assert any("karachi-jazz" in line and "|AA|" in line for line in lines)
    assert any("reported events" in line and "|^ |" in line for line in lines)
    table = next(line for line in lines if line.startswith("AS17557 PTCL  x.com "))
    assert "75%" in table and "tls.reset 3" in table and "2024-02-17 01:00" in table
    jazz = next(line for line in lines if line.startswith("AS24499 Jazz"))
    assert " 0% " in jazz
    flips = next(line for line in lines if line.startswith("lahore-ptcl") and "(2024" in line)
    assert flips.split()[-5:] == ["2", "1", "2", "2", "(2024-02-17)"]  # days, with flips, ...


def test_csv_is_one_tidy_row_per_vantage_endpoint_and_day() -> None:
    event = TimelineEvent(dt.date(2024, 2, 17), "PK", "x", "block", "=cmd|x", "test")
    out = io.StringIO()
    assert write_csv(compare(sample(), [event]), out) == 5
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    first = next(r for r in rows if r["vantage"] == "lahore-ptcl" and r["endpoint"] == "x.com")
    assert first["day"] == "2024-02-17" and first["network"] == "PTCL" and first["asn"] == "17557"
    assert first["isp"] == "AS17557 PTCL"
    assert (first["checks"], first["blocked"], first["flips"]) == ("3", "2", "2")
    assert first["blocked_share"] == "0.6667" and first["methods"] == "tls.reset"
    assert first["events"] == "block: =cmd|x"  # inside the cell, not at its start
    assert {r["vantage"] for r in rows} == {"lahore-ptcl", "karachi-jazz"}


def test_empty_comparison_renders_nothing() -> None:
    assert render_text(compare([])) == ""
    out = io.StringIO()
    assert write_csv(compare([]), out) == 0 and out.getvalue().startswith("day,vantage")
