"""The dashboard in a real headless Chromium, against a real server on loopback.

Checks what a reader sees: the page loads with no console error and no failed
request (every asset from the collector itself), the vantages and endpoints
with their verdicts, the time view drawn with the reported events, a
measurement's evidence opened from its verdict, and a phone-sized screen
without sideways scrolling.  Screenshots are kept (see browser.ARTEFACTS).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.verdict import Status
from storage.records import TimelineEvent
from storage.store import Store
from tests.collectors.dashboard.browser import Console, chromium, screenshot
from tests.collectors.dashboard.test_api import BLOCKED, KARACHI, LAHORE, OK, save


@pytest.fixture
def filled_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'collector.db'}") as store:
        for i in range(48):  # twelve hours, every 15 minutes
            ago = dt.timedelta(minutes=15 * i + 5)
            save(store, LAHORE, "x.com", ago, BLOCKED if i < 30 else OK)  # blocked 7.5 h ago
            save(store, LAHORE, "twitter.com", ago, BLOCKED if i % 2 else OK)  # flickering
            save(store, KARACHI, "x.com", ago, OK)
        yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)).date()
        store.add_events(
            [TimelineEvent(yesterday, "PK", "x", "court", "Court orders X restored", "test")]
        )
        yield store


@pytest.fixture
def server(filled_store: Store) -> Iterator[str]:
    """The dashboard routes served by uvicorn on a loopback port, in a thread."""
    import uvicorn
    from starlette.applications import Starlette

    from collectors.dashboard import routes

    app = Starlette(routes=routes())
    app.state.store = filled_store
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _open(browser: Any, url: str, **context: Any) -> tuple[Any, Console]:
    page = browser.new_page(**context)
    console = Console()
    console.attach(page)
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=20_000)
    return page, console


def _wait_text(page: Any, selector: str, text: str) -> None:
    """Wait for text to appear (a locator: the page's policy forbids Playwright's eval)."""
    page.locator(selector, has_text=text).wait_for(timeout=10_000)


def test_page_shows_verdicts_time_view_and_evidence(server: str) -> None:
    with chromium() as browser:
        page, console = _open(browser, server + "/", viewport={"width": 1280, "height": 900})
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


def test_readable_on_a_phone(server: str) -> None:
    with chromium() as browser:
        phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2}
        page, console = _open(browser, server + "/", is_mobile=True, has_touch=True, **phone)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px of sideways scrolling"
        font = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert font >= 14
        assert page.locator("article.card").count() == 2
        screenshot(page, "dashboard-phone.png")
        page.close()
        assert console.problems == []
