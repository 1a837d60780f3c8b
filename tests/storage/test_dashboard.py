"""storage.dashboard: the dashboard's aggregate queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from probe.verdict import Method, Status, Trigger, Verdict
from storage import dashboard
from storage.records import TimelineEvent, Vantage
from storage.store import Store
from tests.probe import builders
from tests.storage import factories

T0 = dt.datetime(2024, 2, 17, 0, 0, tzinfo=dt.UTC)
LAHORE = Vantage("lahore", country="PK", asn=17557, network="PTCL")
KARACHI = Vantage("karachi", country="PK", network="Jazz")
BLOCKED = Verdict(Status.BLOCKED, (Method.TLS_RESET, Method.HTTP_BLOCKPAGE), Trigger.SNI)
OK = Verdict(Status.ACCESSIBLE)
X_ORDER = ("x.com", "twitter.com", "api.x.com")


def save(store: Store, vantage: Vantage, domain: str, minutes: int, verdict: Verdict) -> str:
    when = T0 + dt.timedelta(minutes=minutes)
    if verdict.status is Status.BLOCKED:
        obs = factories.blocked_sni(domain=domain, started_at=when)
    else:
        obs = builders.replace(builders.working(), domain=domain, input=domain, started_at=when)
    return store.save(obs, verdict, vantage)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def test_latest_is_the_newest_per_vantage_and_domain(store: Store) -> None:
    with store:
        save(store, LAHORE, "twitter.com", 0, OK)
        save(store, LAHORE, "x.com", 0, OK)
        newest_x = save(store, LAHORE, "x.com", 15, BLOCKED)
        save(store, KARACHI, "x.com", 30, OK)
        # A changed description of the same vantage (new network label) is a new row.
        moved = Vantage("karachi", country="PK", network="Jazz 4G")
        karachi_api = save(store, moved, "api.x.com", 45, BLOCKED)
        save(store, LAHORE, "example.org", 60, OK)  # platform "x" here; filtered out below
        found = dashboard.latest(store, "x", X_ORDER)

    assert [v.vantage.name for v in found] == ["karachi", "lahore"]
    karachi, lahore = found
    assert [x.domain for x in lahore.latest] == ["x.com", "twitter.com", "example.org"]
    x_com = lahore.latest[0]
    assert x_com.measurement_id == newest_x
    assert (x_com.status, x_com.blocking, x_com.trigger) == (
        "blocked",
        ("tls.reset", "http.blockpage"),
        "sni",
    )
    assert lahore.last_seen == T0 + dt.timedelta(minutes=60)
    assert [x.domain for x in karachi.latest] == ["x.com", "api.x.com"]
    assert karachi.latest[1].measurement_id == karachi_api
    assert karachi.vantage.network == "Jazz 4G"  # as last described
    assert karachi.last_seen == T0 + dt.timedelta(minutes=45)


def test_latest_filters_by_platform_and_is_empty_on_an_empty_store(store: Store) -> None:
    with store:
        assert dashboard.latest(store, "x") == []
        obs = builders.replace(builders.working(), domain="www.youtube.com", platform="youtube")
        store.save(obs, OK, LAHORE)
        save(store, LAHORE, "x.com", 0, OK)
        only_x = dashboard.latest(store, "x")
        everything = dashboard.latest(store)
    assert [x.domain for x in only_x[0].latest] == ["x.com"]
    assert {x.domain for x in everything[0].latest} == {"x.com", "www.youtube.com"}


def test_status_series_counts_by_bucket_and_status_in_the_period(store: Store) -> None:
    with store:
        for minutes, verdict in [(0, OK), (15, BLOCKED), (30, OK), (45, OK), (60, BLOCKED)]:
            save(store, LAHORE, "x.com", minutes, verdict)
        save(store, LAHORE, "x.com", 24 * 60, BLOCKED)  # outside the period
        save(store, KARACHI, "x.com", 15, BLOCKED)  # another vantage
        save(store, LAHORE, "twitter.com", 61, BLOCKED)
        series = dashboard.status_series(
            store, "lahore", T0, T0 + dt.timedelta(hours=2), dt.timedelta(hours=1), "x"
        )
    assert list(series) == ["twitter.com", "x.com"]
    first, second = series["x.com"]
    assert first.start == T0 and first.counts == {"accessible": 3, "blocked": 1}  # flickering
    assert second.start == T0 + dt.timedelta(hours=1) and second.counts == {"blocked": 1}
    assert [(b.start, b.counts) for b in series["twitter.com"]] == [
        (T0 + dt.timedelta(hours=1), {"blocked": 1})
    ]


def test_status_series_of_an_unknown_vantage_is_empty(store: Store) -> None:
    with store:
        save(store, LAHORE, "x.com", 0, OK)
        assert dashboard.status_series(store, "nowhere", T0, T0 + dt.timedelta(days=1),
                                       dt.timedelta(hours=1)) == {}  # fmt: skip
        assert dashboard.find_vantage(store, "lahore") == LAHORE
        assert dashboard.find_vantage(store, "nowhere") is None


def test_events_of_the_country_platform_and_period(store: Store) -> None:
    def event(day: int, platform: str, country: str = "PK", kind: str = "block") -> TimelineEvent:
        return TimelineEvent(
            date=dt.date(2024, 2, day), country=country, platform=platform, kind=kind,
            title=f"{kind} {platform} {country} {day}", source="test",
        )  # fmt: skip

    with store:
        store.add_events(
            [event(17, "x"), event(18, "*", kind="shutdown"), event(18, "youtube"),
             event(17, "x", country="IR"), event(25, "x", kind="restore")]
        )  # fmt: skip
        found = dashboard.events(store, "PK", "x", T0, T0 + dt.timedelta(days=5))
        assert dashboard.events(store, None, "x") == []
    assert [e.title for e in found] == ["block x PK 17", "shutdown * PK 18"]
