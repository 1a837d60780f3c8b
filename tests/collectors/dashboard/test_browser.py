"""The dashboard in a real headless Chromium, against a real collector on loopback.

The collector is ``probe collector serve --private`` in its own process, filled
by ``probe upload`` from two probes' own databases over a real socket, and
read as a logged-in reader (the reader token as HTTP Basic password).

Checks what a reader sees: the page loads with no console error and no failed
request (every asset from the collector itself), the vantages and endpoints
with their verdicts, the time view drawn with the reported events, a
measurement's evidence opened from its verdict, and a phone-sized screen
without sideways scrolling.  Screenshots are kept (see browser.ARTEFACTS).
"""

from __future__ import annotations

import datetime as dt
import itertools
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.dashboard import READ_TOKEN_ENV
from probe.verdict import Status
from storage.records import TimelineEvent, Vantage
from storage.store import Store
from tests.collectors.collectorproc import CollectorProcess, probe
from tests.collectors.dashboard.browser import Console, chromium, screenshot
from tests.collectors.dashboard.test_api import BLOCKED, KARACHI, LAHORE, OK, save

VANTAGES = (LAHORE, KARACHI)
PASSWORD = "dashboard-reader-0123456789"


def _probe_database(path: Path, vantage: Vantage) -> str:
    """A probe's own database: twelve hours of checks every 15 minutes."""
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        for i in range(48):
            ago = dt.timedelta(minutes=15 * i + 5)
            if vantage is LAHORE:
                save(store, vantage, "x.com", ago, BLOCKED if i < 30 else OK)  # blocked 7.5 h ago
                save(store, vantage, "twitter.com", ago, BLOCKED if i % 2 else OK)  # flickering
            else:
                save(store, vantage, "x.com", ago, OK)
    return url


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """``probe collector serve`` on loopback, filled by ``probe upload`` from two probes."""
    from storage.registry import Registry

    tmp_path = tmp_path_factory.mktemp("collector")
    collector_db = f"sqlite:///{tmp_path / 'collector.db'}"
    with Store.open(collector_db) as store:
        tokens = {v.name: Registry(store.database).add(v)[1] for v in VANTAGES}
        yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)).date()
        store.add_events(
            [TimelineEvent(yesterday, "PK", "x", "court", "Court orders X restored", "test")]
        )
    proc = CollectorProcess(
        collector_db,
        tmp_path / "collector.log",
        extra=["--private"],
        env={READ_TOKEN_ENV: PASSWORD},
    ).start()
    try:
        for vantage in VANTAGES:
            local = _probe_database(tmp_path / f"{vantage.name}.db", vantage)
            done = probe(
                "upload", "--collector", proc.url, "--db", local,
                env={"REACHPROBE_UPLOAD_TOKEN": tokens[vantage.name]},
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert f"uploaded {48 if vantage is KARACHI else 96} measurement(s)" in done.stdout
        yield proc
    finally:
        proc.stop()
        for token in tokens.values():
            assert token[5:] not in proc.output(), "the collector logged a token"
        assert PASSWORD not in proc.output(), "the collector logged the reader token"


def _open(browser: Any, url: str, **context: Any) -> tuple[Any, Console]:
    """The dashboard as a reader who logged in (HTTP Basic: the browser's prompt)."""
    credentials = {"username": "reader", "password": PASSWORD}
    page = browser.new_page(http_credentials=credentials, **context)
    console = Console()
    console.attach(page)
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=60_000)  # slow under load
    return page, console


def _wait_text(page: Any, selector: str, text: str) -> None:
    """Wait for text to appear (a locator: the page's policy forbids Playwright's eval)."""
    page.locator(selector, has_text=text).wait_for(timeout=30_000)


def test_page_shows_verdicts_time_view_and_evidence(collector: CollectorProcess) -> None:
    with chromium() as browser:
        page, console = _open(browser, collector.url + "/", viewport={"width": 1280, "height": 900})
        cards = page.locator("article.card")
        assert cards.count() == 2
        lahore = page.locator('article[data-vantage="lahore"]')
        assert "PTCL" in lahore.inner_text() and "AS17557" in lahore.inner_text()
        rows = lahore.locator("tr")
        assert rows.nth(0).get_attribute("data-domain") == "x.com"  # X's own endpoint first
        x_verdict = rows.nth(0).locator("a.verdict")
        assert x_verdict.inner_text() == "blocked"
        assert "tls.reset" in rows.nth(0).inner_text() and "sni" in rows.nth(0).inner_text()
        colour = x_verdict.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(207, 34, 46)"  # --blocked
        karachi = page.locator('article[data-vantage="karachi"] a.verdict')
        assert karachi.inner_text() == Status.ACCESSIBLE.value

        # The time view: drawn by Chart.js for the selected vantage, with the events.
        page.select_option("#vantage-select", "lahore")
        page.select_option("#period-select", "1d")  # 15-minute buckets: one check each
        _wait_text(page, "#time-summary", "lahore (PTCL, AS17557, PK)")
        _wait_text(page, "#time-summary", "buckets of 15 min")
        page.select_option("#period-select", "7d")  # 2-hour buckets: flicker is mixed buckets
        _wait_text(page, "#time-summary", "buckets of 120 min")
        assert page.get_attribute("#timeline", "data-rendered") == "2"
        drawn = page.evaluate(
            """() => {
                const chart = Chart.getChart('timeline');
                const data = chart.data.datasets[0].data;
                return {
                    bars: data.length,
                    states: [...new Set(data.map(p => p.state))].sort(),
                    events: Object.keys(chart.options.plugins.annotation.annotations).length,
                };
            }"""
        )
        assert drawn["bars"] >= 12
        assert drawn["states"] == ["accessible", "blocked", "intermittent"]
        assert drawn["events"] == 1
        mixed = page.inner_text("#time-summary").split("intermittent: ")[1].split(", ")
        assert "twitter.com" in mixed  # flips every check; x.com only where the block began
        assert "Court orders X restored" in page.inner_text("#events")
        screenshot(page, "dashboard-desktop.png")

        # A verdict opens that measurement's evidence: the CLI's lines, "why" included.
        x_verdict.click()
        page.wait_for_selector("dialog#evidence[open]")
        evidence = page.inner_text("#evidence-lines")
        assert evidence.startswith("x.com  BLOCKED  tls.reset")
        assert "why             TLS handshake with SNI x.com failed" in evidence
        assert "lahore" in page.inner_text("#evidence-title")
        screenshot(page, "dashboard-evidence.png")
        page.keyboard.press("Escape")
        page.wait_for_selector("dialog#evidence", state="hidden")
        page.close()
        assert console.problems == []


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def _expected_label(value: int, unit: int) -> str:
    """What a tick at ``value`` ms must say: its UTC date on day ticks and at midnight,
    else its UTC hour."""
    at = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return at.strftime("%m-%d") if unit == DAY_MS or value % DAY_MS == 0 else at.strftime("%H:%M")


@pytest.mark.parametrize("width", [1280, 390])
def test_time_axis_ticks_fall_on_whole_hours_or_days_and_say_so(
    collector: CollectorProcess, width: int
) -> None:
    with chromium() as browser:
        page, console = _open(
            browser, collector.url + "/", viewport={"width": width, "height": 900}
        )
        page.select_option("#vantage-select", "lahore")
        for period, bucket_min, unit in (
            ("1d", 15, HOUR_MS),
            ("7d", 120, DAY_MS),
            ("30d", 360, DAY_MS),
            ("90d", 1440, DAY_MS),
        ):
            page.select_option("#period-select", period)
            _wait_text(page, "#time-summary", f"buckets of {bucket_min} min")
            axis = page.evaluate(
                """() => {
                    const x = Chart.getChart('timeline').scales.x;
                    return {min: x.min, max: x.max,
                            ticks: x.ticks.map(t => ({value: t.value, label: t.label}))};
                }"""
            )
            values = [t["value"] for t in axis["ticks"]]
            assert len(values) >= 3, (period, axis)
            assert all(v % unit == 0 for v in values), (period, values)
            assert all(axis["min"] <= v <= axis["max"] for v in values), (period, axis)
            steps = {b - a for a, b in itertools.pairwise(values)}
            assert len(steps) == 1, (period, values)  # evenly spaced, also when thinned
            for tick in axis["ticks"]:
                assert tick["label"] == _expected_label(tick["value"], unit), (period, tick)
            labels = [t["label"] for t in axis["ticks"]]
            assert len(set(labels)) == len(labels), (period, labels)
        page.close()
        assert console.problems == []


def test_private_collector_shows_nothing_without_the_reader_token(
    collector: CollectorProcess,
) -> None:
    for path in ("/", "/static/dashboard.js", "/api/dashboard/v1/latest"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(collector.url + path, timeout=10)
        assert refused.value.code == 401
    request = urllib.request.Request(collector.url + "/api/dashboard/v1/latest")
    request.add_header("Authorization", f"Bearer {PASSWORD}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
    # The uploads came from 127.0.0.1: a vantage's address is never shown, nor its notes.
    assert '"lahore"' in body and "127.0.0.1" not in body and "notes" not in body


def test_readable_on_a_phone(collector: CollectorProcess) -> None:
    with chromium() as browser:
        phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2}
        page, console = _open(browser, collector.url + "/", is_mobile=True, has_touch=True, **phone)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px of sideways scrolling"
        font = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert font >= 14
        assert page.locator("article.card").count() == 2
        screenshot(page, "dashboard-phone.png")
        page.close()
        assert console.problems == []


def test_an_answer_for_an_older_choice_does_not_overwrite_the_newer(
    collector: CollectorProcess,
) -> None:
    """The reader picks 30 days, then 1 day; the 30-day answer comes last (held here,
    as a slow query or a busy collector does): the view stays on 1 day."""
    with chromium() as browser:
        page, console = _open(browser, collector.url + "/")
        page.select_option("#vantage-select", "lahore")
        _wait_text(page, "#time-summary", "buckets of 120 min")  # the default 7 days
        held: list[Any] = []

        def hold(route: Any) -> None:
            held.append(route)

        page.route(lambda url: "/series?" in url and "period=30d" in url, hold)
        page.select_option("#period-select", "30d")
        while not held:
            page.wait_for_timeout(50)
        page.select_option("#period-select", "1d")
        _wait_text(page, "#time-summary", "buckets of 15 min")
        with page.expect_response(lambda r: "period=30d" in r.url):
            held[0].continue_()
        page.wait_for_timeout(500)  # time for the late answer to be (wrongly) drawn
        assert "buckets of 15 min" in page.inner_text("#time-summary")
        page.close()
        assert console.problems == []


def _name_only(vantage: dict[str, Any]) -> None:
    """A vantage as registered with a name only (`probe collector vantage add NAME`)."""
    vantage.update(network=None, asn=None, country=None)


def test_a_vantage_with_a_name_only_reads_without_empty_parts(
    collector: CollectorProcess,
) -> None:
    """One vantage, registered without network, ASN or country: the collector's
    answers are narrowed to that on their way to the page (as such a collector
    would answer), and the page says "1 vantage", no "()" and no leading "·"."""

    def narrowed(route: Any) -> None:
        response = route.fetch()
        data = response.json()
        if "vantages" in data:  # /latest
            data["vantages"] = [v for v in data["vantages"] if v["name"] == "karachi"]
            _name_only(data["vantages"][0])
        else:  # /series
            _name_only(data["vantage"])
        route.fulfill(response=response, json=data)

    with chromium() as browser:
        credentials = {"username": "reader", "password": PASSWORD}
        page = browser.new_page(http_credentials=credentials)
        console = Console()
        console.attach(page)
        page.route(lambda url: "/api/dashboard/v1/" in url, narrowed)
        page.goto(collector.url + "/")
        page.wait_for_selector("body[data-ready]", timeout=60_000)
        assert page.inner_text("#status") == "1 vantage"
        where = page.inner_text('article[data-vantage="karachi"] .where')
        assert where.startswith("last seen "), where
        _wait_text(page, "#time-summary", "buckets of")
        summary = page.inner_text("#time-summary")
        assert summary.startswith("karachi, ") and "()" not in summary, summary
        page.close()
        assert console.problems == []
