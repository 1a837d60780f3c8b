"""The dashboard's JSON API and page routes, on SQLite and PostgreSQL.

The routes run in a Starlette app exactly as the collector mounts them
(``extra_routes``; the store as ``app.state.store``), driven over ASGI by
Starlette's test client.  The browser tests drive the real server.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from collectors.dashboard import API_PREFIX, STATIC, routes
from probe.verdict import Method, Status, Trigger, Verdict
from storage.records import TimelineEvent, Vantage
from storage.store import Store
from tests.probe import builders
from tests.storage import factories

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
LAHORE = Vantage("lahore", country="PK", asn=17557, network="PTCL", notes="home of Ali")
KARACHI = Vantage("karachi", country="PK", network="Jazz")
BLOCKED = Verdict(
    Status.BLOCKED,
    (Method.TLS_RESET,),
    Trigger.SNI,
    reasons=(
        "TLS handshake with SNI x.com failed: connection_reset, while SNI example.org worked.",
    ),
)
OK = Verdict(Status.ACCESSIBLE)
TOKEN = "reader-secret-0123456789"


def save(store: Store, vantage: Vantage, domain: str, ago: dt.timedelta, verdict: Verdict) -> str:
    when = NOW - ago
    if verdict.status is Status.BLOCKED:
        obs = factories.blocked_sni(domain=domain, started_at=when)
    else:
        obs = builders.replace(builders.working(), domain=domain, input=domain, started_at=when)
    return store.save(obs, verdict, vantage)


def client(store: Store, read_token: str | None = None) -> TestClient:
    app = Starlette(routes=routes(read_token=read_token))
    app.state.store = store
    return TestClient(app)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


@pytest.fixture
def filled(store: Store) -> dict[str, str]:
    ids = {
        "lahore twitter": save(store, LAHORE, "twitter.com", dt.timedelta(hours=2), OK),
        "lahore x old": save(store, LAHORE, "x.com", dt.timedelta(hours=3), OK),
        "lahore x": save(store, LAHORE, "x.com", dt.timedelta(minutes=20), BLOCKED),
        "karachi x": save(store, KARACHI, "x.com", dt.timedelta(hours=1), OK),
    }
    # Flickering on karachi: blocked and accessible inside one 15-minute bucket of the last day
    # (5 and 10 minutes into the bucket that began at least 5 hours ago).
    bucket = int((NOW - dt.timedelta(hours=5)).timestamp()) // 900 * 900
    for offset, verdict in ((300, BLOCKED), (600, OK)):
        save(
            store,
            KARACHI,
            "t.co",
            NOW - dt.datetime.fromtimestamp(bucket + offset, dt.UTC),
            verdict,
        )
    yesterday = (NOW - dt.timedelta(hours=30)).date()
    store.add_events(
        [
            TimelineEvent(yesterday, "PK", "x", "block", "X suspended", "test", "high"),
            TimelineEvent(yesterday, "IR", "x", "block", "elsewhere", "test"),
        ]
    )
    return ids


def test_latest_lists_vantages_and_endpoints_x_first(store: Store, filled: dict[str, str]) -> None:
    with client(store) as c:
        response = c.get(f"{API_PREFIX}/latest")
    assert response.status_code == 200
    data = response.json()
    assert data["schema"] == "reachprobe.dashboard.latest/1" and data["platform"] == "x"
    assert data["platform_title"] == "X (Twitter)"
    assert data["endpoints"][:3] == ["x.com", "twitter.com", "api.x.com"]  # the platform's order
    assert [v["name"] for v in data["vantages"]] == ["karachi", "lahore"]
    lahore = data["vantages"][1]
    # Name, ISP and country only: never notes, an address or a token.
    assert set(lahore) == {"name", "country", "asn", "network", "last_seen", "age_s", "latest"}
    assert (lahore["network"], lahore["country"], lahore["asn"]) == ("PTCL", "PK", 17557)
    assert [x["domain"] for x in lahore["latest"]] == ["x.com", "twitter.com"]
    x = lahore["latest"][0]
    assert x["measurement"] == filled["lahore x"]
    assert (x["verdict"], x["blocking"], x["trigger"]) == ("blocked", ["tls.reset"], "sni")
    assert 20 * 60 <= x["age_s"] < 20 * 60 + 120
    assert lahore["age_s"] == x["age_s"]  # last seen: its newest measurement
    assert "home of Ali" not in response.text


def test_series_counts_buckets_shows_flicker_and_events(
    store: Store, filled: dict[str, str]
) -> None:
    with client(store) as c:
        day = c.get(f"{API_PREFIX}/series", params={"vantage": "karachi", "period": "1d"}).json()
        week = c.get(f"{API_PREFIX}/series", params={"vantage": "karachi"}).json()
    assert day["schema"] == "reachprobe.dashboard.series/1"
    assert day["bucket_s"] == 900 and week["bucket_s"] == 7200 and week["period"] == "7d"
    assert day["vantage"] == {"name": "karachi", "country": "PK", "asn": None, "network": "Jazz"}
    assert [e["domain"] for e in day["endpoints"]] == ["x.com", "t.co"]
    flicker = [b["counts"] for b in day["endpoints"][1]["buckets"]]
    assert flicker == [{"accessible": 1, "blocked": 1}]
    until = dt.datetime.fromisoformat(day["until"])
    assert dt.datetime.fromisoformat(day["since"]) == until - dt.timedelta(days=1)
    assert until.timestamp() % 900 == 0 and until >= NOW
    assert [e["title"] for e in day["events"]] == []  # the ban was more than a day ago
    assert [(e["kind"], e["title"]) for e in week["events"]] == [("block", "X suspended")]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"vantage": "x" * 201}, 400),
        ({"vantage": "lahore", "period": "2y"}, 400),
        ({"vantage": "lahore", "platform": "<script>"}, 400),
        ({"vantage": "nowhere"}, 404),
    ],
)
def test_series_refuses_bad_queries_in_one_line(
    store: Store, filled: dict[str, str], params: dict[str, str], status: int
) -> None:
    with client(store) as c:
        response = c.get(f"{API_PREFIX}/series", params=params)
    assert response.status_code == status
    assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]


def test_measurement_evidence_is_the_cli_rendering_with_its_why_lines(
    store: Store, filled: dict[str, str]
) -> None:
    from probe.render import check_table

    wanted = filled["lahore x"]
    with client(store) as c:
        data = c.get(f"{API_PREFIX}/measurements/{wanted}").json()
        missing = c.get(f"{API_PREFIX}/measurements/{'0' * 8}-0000-4000-8000-{'0' * 12}")
        prefix = c.get(f"{API_PREFIX}/measurements/{wanted[:8]}")
        junk = c.get(f"{API_PREFIX}/measurements/..%2F..%2Fetc")
    item = store.get(wanted)
    assert item is not None
    assert (
        data["evidence"] == check_table(item.observations, item.verdict, colour=False).splitlines()
    )
    assert f"  why             {BLOCKED.reasons[0]}" in data["evidence"]
    assert data["reasons"] == list(BLOCKED.reasons)
    assert (data["verdict"], data["trigger"], data["vantage"]["name"]) == (
        "blocked",
        "sni",
        "lahore",
    )
    assert "notes" not in data["vantage"]
    assert missing.status_code == prefix.status_code == junk.status_code == 404


def test_empty_collector_answers_empty_lists(store: Store) -> None:
    with client(store) as c:
        data = c.get(f"{API_PREFIX}/latest").json()
    assert data["vantages"] == [] and data["endpoints"][0] == "x.com"


def test_page_and_assets_come_from_the_collector_with_a_strict_policy(store: Store) -> None:
    with client(store) as c:
        page = c.get("/")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        fetched = {a: c.get(a) for a in assets if not a.startswith("data:")}
        escape = c.get("/static/../api.py")
        unknown = c.get("/static/api.py")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    # Every script and stylesheet is one of ours, served here: nothing from a CDN.
    assert all(a.startswith("/static/") for a in fetched), assets
    assert {a for a in fetched if a.endswith(".js")} >= {
        "/static/vendor/chart.umd.min.js",
        "/static/vendor/chartjs-plugin-annotation.min.js",
        "/static/dashboard.js",
    }
    assert all(r.status_code == 200 for r in fetched.values())
    assert fetched["/static/dashboard.js"].headers["content-type"].startswith("text/javascript")
    assert escape.status_code == 404 and unknown.status_code == 404
    for name in ("chart.js.LICENSE.md", "chartjs-plugin-annotation.LICENSE.md"):
        assert "MIT" in (STATIC / "vendor" / name).read_text()
    own = [(STATIC / n).read_text() for n in ("index.html", "dashboard.js", "dashboard.css")]
    assert not any(re.search(r"https?://", text) for text in own)


def test_private_dashboard_needs_the_reader_token(store: Store, filled: dict[str, str]) -> None:
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    wrong = base64.b64encode(b"anyone:guess").decode()
    with client(store, read_token=TOKEN) as c:
        anonymous = [c.get(p) for p in ("/", "/static/dashboard.js", f"{API_PREFIX}/latest")]
        bad = [
            c.get(f"{API_PREFIX}/latest", headers={"Authorization": h})
            for h in (f"Basic {wrong}", "Bearer guess", "Basic !!!", "Bearer ", TOKEN)
        ]
        bearer = c.get(f"{API_PREFIX}/latest", headers={"Authorization": f"Bearer {TOKEN}"})
        page = c.get("/", headers={"Authorization": f"Basic {basic}"})
    for response in anonymous + bad:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Basic realm="reachprobe"')
        assert TOKEN not in response.text
    assert bearer.status_code == 200 and len(bearer.json()["vantages"]) == 2
    assert page.status_code == 200 and page.headers["cache-control"] == "private, no-store"


def test_reader_token_comes_from_the_environment_and_must_be_long() -> None:
    from collectors.dashboard import READ_TOKEN_ENV, reader_token
    from probe.errors import UsageError

    assert reader_token(False, {READ_TOKEN_ENV: TOKEN}) is None  # public: no token needed
    assert reader_token(True, {READ_TOKEN_ENV: f" {TOKEN}\n"}) == TOKEN
    for environ in ({}, {READ_TOKEN_ENV: "short"}):
        with pytest.raises(UsageError, match=READ_TOKEN_ENV):
            reader_token(True, environ)


def test_private_collector_without_a_reader_token_refuses_to_start(tmp_path: Path) -> None:
    from collectors.dashboard import READ_TOKEN_ENV
    from tests.collectors.collectorproc import probe

    db = f"sqlite:///{tmp_path / 'collector.db'}"
    done = probe("collector", "serve", "--private", "--db", db, "--listen", "127.0.0.1:0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and READ_TOKEN_ENV in done.stderr


def test_a_failing_database_is_503_without_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    with Store.open(f"sqlite:///{path}") as store:
        save(store, LAHORE, "x.com", dt.timedelta(minutes=5), OK)
        store.database.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)  # now it has no tables
        with client(store) as c:
            response = c.get(f"{API_PREFIX}/latest")
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable"}
