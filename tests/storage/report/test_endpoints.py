"""Per-endpoint series: a block of 1 of the 7 X endpoints is detected and dated,
although the vantage's pooled share hardly moves."""

from __future__ import annotations

import datetime as dt
import random

from probe.targets import load_platforms
from storage.records import TimelineEvent
from storage.report.plot import render_png
from storage.report.summary import Check, build_report
from storage.report.text import render_text
from storage.timeline import ReportedIndex

UTC = dt.UTC
START = dt.datetime(2024, 2, 14, tzinfo=UTC)
ONSET = dt.datetime(2024, 2, 17, 18, tzinfo=UTC)
END = dt.datetime(2024, 2, 21, 6, tzinfo=UTC)
STOP = dt.datetime(2024, 2, 25, tzinfo=UTC)
STEP = dt.timedelta(minutes=30)
EVENTS = [
    TimelineEvent(dt.date(2024, 2, 17), "PK", "x", "block", "X suspended", "press", "high"),
    TimelineEvent(dt.date(2024, 2, 21), "PK", "x", "restore", "X back", "press", "high"),
]


def checks(seed: int = 7) -> list[Check]:
    """The 7 X endpoints every 30 minutes from one vantage; x.com alone is blocked
    (with 10% of checks getting through) from ONSET to END."""
    rng = random.Random(seed)
    index = ReportedIndex(EVENTS)
    out = []
    at = START
    while at < STOP:
        for domain in load_platforms()["x"].domains:
            blocked = domain == "x.com" and ONSET <= at < END and rng.random() > 0.1
            out.append(
                Check(
                    vantage="pk-ptcl",
                    at=at,
                    verdict="blocked" if blocked else "accessible",
                    methods=("tls.reset",) if blocked else (),
                    domain=domain,
                    platform="x",
                    country="PK",
                    asn=17557,
                    network="PTCL",
                    reported=index.at("PK", "x", at).status,
                )
            )
        at += STEP
    return out


def test_one_endpoint_of_seven_is_detected_and_dated() -> None:
    report = build_report(checks(), EVENTS, country="PK", platform="x")
    (vantage,) = report.vantages
    assert vantage.episodes == (), "the pooled share (1 of 7) shows no sustained block"
    endpoints = {e.key: e for e in vantage.endpoints}
    assert set(endpoints) == set(load_platforms()["x"].domains)
    (episode,) = endpoints["x.com"].episodes
    assert abs(episode.onset - ONSET) <= STEP * 2
    assert episode.end is not None and abs(episode.end - END) <= STEP * 2
    assert all(not e.episodes for k, e in endpoints.items() if k != "x.com")
    onset = next(e for e in endpoints["x.com"].edges if e.kind == "onset")
    assert onset.reported == dt.datetime(2024, 2, 17, tzinfo=UTC)  # the reported block
    assert onset.lag is not None and dt.timedelta(hours=17) <= onset.lag <= dt.timedelta(hours=19)


def test_text_says_which_endpoint_was_blocked_when() -> None:
    text = render_text(build_report(checks(), EVENTS, country="PK", platform="x"))
    assert "no sustained blocking detected" not in text
    lines = text.splitlines()
    when = lines[lines.index("Which endpoints were blocked when") + 1]
    assert when.startswith("pk-ptcl: x.com blocked 2024-02-17 1")
    assert when.endswith("no sustained blocking on the other 6 endpoint(s)")
    assert any(line.startswith("pk-ptcl / x.com  onset  2024-02-17") for line in lines)
    row = next(line for line in lines if line.startswith("pk-ptcl  x.com "))
    assert "tls.reset" in row


def test_no_block_anywhere_says_so_per_endpoint() -> None:
    calm = [c for c in checks() if c.domain != "x.com"]
    text = render_text(build_report(calm, EVENTS, country="PK", platform="x"))
    assert "no sustained blocking detected" in text
    assert "pk-ptcl: no sustained blocking on 6 endpoint(s)" in text


def test_one_panel_per_vantage_with_a_line_per_endpoint() -> None:
    png = render_png(build_report(checks(), EVENTS, country="PK", platform="x", domain=None))
    assert png.startswith(b"\x89PNG")


def test_a_period_without_measurements_still_lists_its_events() -> None:
    since = dt.datetime(2024, 2, 16, tzinfo=UTC)
    until = dt.datetime(2024, 2, 22, tzinfo=UTC)
    text = render_text(build_report([], EVENTS, since=since, until=until))
    assert "No measurements match." in text
    assert "2024-02-17 x   block      X suspended" in text
    assert "2024-02-21 x   restore    X back" in text
