"""Store: round trips, filters, lookups, re-classification, timeline events."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest

from probe.errors import UsageError
from probe.verdict import CLASSIFIER_VERSION, Method, Status, Trigger, Verdict
from storage import MeasurementFilter, Store, StoredMeasurement, TimelineEvent, Vantage
from tests.storage import factories as F

DAY = dt.timedelta(days=1)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


def test_round_trip_keeps_every_observation_and_the_verdict(store: Store) -> None:
    obs = F.blocked_sni()
    measurement_id = store.save(obs, F.BLOCKED, F.VANTAGE)

    got = store.get(measurement_id)

    assert got is not None
    assert got.observations == obs
    assert got.verdict == F.BLOCKED
    row = got.row
    assert row.id == measurement_id
    assert row.vantage == F.VANTAGE
    assert (row.domain, row.input, row.platform) == ("x.com", "https://x.com/", "x")
    assert row.started_at == obs.started_at and row.started_at.tzinfo is not None
    assert row.verdict == "blocked"
    assert row.blocking == ("dns.injection", "tls.reset", "http.blockpage")
    assert row.trigger == "sni"
    assert row.dns_answers == ("198.51.100.7",)
    assert row.control_answers == ("203.0.113.10",)
    assert row.first_failure == "tls:connection_reset"
    assert row.http_status == 200 and row.http_title == "Site blocked"
    assert row.blockpage == "pk-prohibited"


def test_get_accepts_a_unique_prefix_and_rejects_bad_ids(store: Store) -> None:
    measurement_id = store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)

    found = store.get(measurement_id[:8].upper())
    assert found is not None and found.row.id == measurement_id
    assert store.get("00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(UsageError, match="first 8"):
        store.get("abc")
    with pytest.raises(UsageError, match="first 8"):
        store.get("'; drop table measurements; --")


def test_get_refuses_an_ambiguous_prefix(store: Store) -> None:
    from storage.summary import measurement_row

    items = []
    for suffix in ("1", "2"):
        mid = f"abcdef12-0000-4000-8000-00000000000{suffix}"
        obs = F.accessible()
        row = measurement_row(mid, F.VANTAGE, obs, F.ACCESSIBLE)
        items.append(StoredMeasurement(row, obs, F.ACCESSIBLE))
    assert store.import_measurements(items) == (2, 0)
    with pytest.raises(UsageError, match="ambiguous"):
        store.get("abcdef12")
    assert store.get("abcdef12-0000-4000-8000-000000000002") is not None


def test_filters_and_ordering(store: Store) -> None:
    other = Vantage(name="karachi-jazz", country="PK", asn=24499, network="Jazz")
    abroad = Vantage(name="control-de", country="DE")
    t = F.START
    ids = {
        "x-old": store.save(F.blocked_sni(started_at=t), F.BLOCKED, F.VANTAGE),
        "x-new": store.save(F.blocked_sni(started_at=t + DAY), F.BLOCKED, other),
        "ex": store.save(F.accessible(started_at=t + 2 * DAY), F.ACCESSIBLE, F.VANTAGE),
        "de": store.save(
            F.accessible(started_at=t + 3 * DAY, domain="x.com"), F.ACCESSIBLE, abroad
        ),
    }

    def found(**kw: object) -> list[str]:
        return [r.id for r in store.iter_rows(MeasurementFilter(**kw))]  # type: ignore[arg-type]

    assert found() == [ids["de"], ids["ex"], ids["x-new"], ids["x-old"]]  # newest first
    assert [r.id for r in store.iter_rows(oldest_first=True)] == found()[::-1]
    assert found(domain="X.com") == [ids["de"], ids["x-new"], ids["x-old"]]
    assert found(platform="x") == [ids["x-new"], ids["x-old"]]
    assert found(vantage="karachi-jazz") == [ids["x-new"]]
    assert found(country="pk") == [ids["ex"], ids["x-new"], ids["x-old"]]
    assert found(verdict="blocked") == [ids["x-new"], ids["x-old"]]
    assert found(since=t + DAY) == [ids["de"], ids["ex"], ids["x-new"]]
    assert found(until=t + DAY) == [ids["x-old"]]
    # Filters compare instants, whatever zone they are given in.
    pkt = dt.timezone(dt.timedelta(hours=5))
    assert found(since=(t + DAY).astimezone(pkt), until=(t + 2 * DAY).astimezone(pkt)) == [
        ids["x-new"]
    ]
    assert found(limit=2) == [ids["de"], ids["ex"]]
    assert found(country="PK", verdict="blocked", limit=1) == [ids["x-new"]]
    assert store.count(MeasurementFilter(country="PK")) == 3
    assert [s.row.id for s in store.iter_full(MeasurementFilter(verdict="accessible"))] == [
        ids["de"],
        ids["ex"],
    ]


def test_vantage_descriptions_are_kept_per_measurement(store: Store) -> None:
    moved = dataclasses.replace(F.VANTAGE, asn=59257, network="CMPak")
    first = store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)
    second = store.save(F.accessible(), F.ACCESSIBLE, moved)
    third = store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)

    rows = {r.id: r.vantage for r in store.iter_rows()}
    assert rows[first] == rows[third] == F.VANTAGE
    assert rows[second] == moved
    assert sum(1 for _ in store.iter_rows(MeasurementFilter(vantage="lahore-ptcl"))) == 3


def test_untrusted_text_is_stored_safely(store: Store) -> None:
    title = '=HYPERLINK("x")\x00, "quoted"\nnext line \udcff end'
    obs = F.blocked_sni(title=title)
    got = store.get(store.save(obs, F.BLOCKED, F.VANTAGE))

    assert got is not None
    expected = '=HYPERLINK("x"), "quoted"\nnext line \ufffd end'
    assert got.row.http_title == expected
    plain = next(e for e in got.observations.endpoints if e.port == 80)
    assert plain.http is not None and plain.http.title == expected


def test_reclassify_rewrites_verdicts_and_keeps_observations(store: Store) -> None:
    blocked = [store.save(F.blocked_sni(started_at=F.START + i * DAY), F.BLOCKED, F.VANTAGE)
               for i in range(3)]  # fmt: skip
    fine = store.save(F.accessible(started_at=F.START + 5 * DAY), F.ACCESSIBLE, F.VANTAGE)
    seen = []

    def classify(obs):  # type: ignore[no-untyped-def]
        seen.append(obs)
        if obs.domain == "example.com":
            return F.ACCESSIBLE
        return Verdict(Status.BLOCKED, (Method.TLS_RESET,), Trigger.SNI, ("new reason",),
                       classifier_version="2")  # fmt: skip

    # Oldest first: the limit takes the first two blocked measurements.
    assert store.reclassify(classify, MeasurementFilter(limit=2)) == (2, 2)
    assert store.reclassify(classify) == (4, 1)
    assert store.reclassify(classify) == (4, 0)
    assert all(o == F.blocked_sni(started_at=o.started_at) for o in seen if o.domain == "x.com")
    for measurement_id in blocked:
        got = store.get(measurement_id)
        assert got is not None
        assert got.verdict.blocking == (Method.TLS_RESET,)
        assert got.verdict.reasons == ("new reason",)
        assert got.row.classifier_version == "2"
        assert got.observations.endpoints == F.blocked_sni().endpoints
    untouched = store.get(fine)
    assert untouched is not None and untouched.verdict == F.ACCESSIBLE
    assert untouched.row.classifier_version == CLASSIFIER_VERSION


def test_delete_before(store: Store) -> None:
    old = store.save(F.accessible(started_at=F.START), F.ACCESSIBLE, F.VANTAGE)
    new = store.save(F.accessible(started_at=F.START + DAY), F.ACCESSIBLE, F.VANTAGE)

    assert store.delete_before(F.START + dt.timedelta(hours=1)) == 1
    assert store.get(old) is None
    assert store.get(new) is not None


def test_timeline_events_are_unique_and_ordered(store: Store) -> None:
    block = TimelineEvent(dt.date(2024, 2, 17), "PK", "x", "block", "X suspended", "press", "high",
                          dt.time(22, 0), "https://example.org/a")  # fmt: skip
    court = TimelineEvent(dt.date(2024, 2, 17), "PK", "x", "court", "Court notice", "press")
    restore = TimelineEvent(dt.date(2025, 5, 7), "PK", "x", "restore", "X back", "press", "high")
    other = TimelineEvent(dt.date(2023, 5, 9), "PK", "youtube", "block", "YouTube", "press")

    assert store.add_events([restore, block, court, other]) == 4
    assert store.add_events([block, dataclasses.replace(block, source="elsewhere")]) == 0
    assert store.add_events([]) == 0

    assert list(store.iter_events(country="pk", platform="x")) == [court, block, restore]
    assert list(store.iter_events()) == [other, court, block, restore]
    assert list(store.iter_events(country="IR")) == []


def test_timeline_event_validates_its_vocabulary() -> None:
    with pytest.raises(ValueError, match="kind"):
        TimelineEvent(dt.date(2024, 1, 1), "PK", "x", "rumour", "t", "s")
    with pytest.raises(ValueError, match="certainty"):
        TimelineEvent(dt.date(2024, 1, 1), "PK", "x", "block", "t", "s", "sure")
    with pytest.raises(ValueError, match="country"):
        TimelineEvent(dt.date(2024, 1, 1), "pak", "x", "block", "t", "s")
