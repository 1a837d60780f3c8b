"""The collector app in-process, on SQLite and PostgreSQL: uploads, idempotence, refusals.

Every refusal is checked for its status and reason and for having stored
nothing: a batch is all or nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from collectors import protocol
from collectors.server import Settings, create_app
from storage.records import Vantage
from storage.registry import Registry
from storage.store import Store
from tests.collectors import helpers as H

URL = protocol.MEASUREMENTS_PATH


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


@pytest.fixture
def token(store: Store) -> str:
    return Registry(store.database).add(H.PTCL)[1]


def client_for(store: Store, **settings: Any) -> TestClient:
    return TestClient(create_app(store, Settings(**settings)), raise_server_exceptions=False)


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with client_for(store) as c:
        yield c


def post(client: TestClient, token: str | None, body: bytes, **headers: str) -> Any:
    h = {"Content-Type": protocol.CONTENT_TYPE, **headers}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return client.post(URL, content=body, headers=h)


def count(store: Store, table: str = "measurements") -> int:
    with store.database.reading() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# ------------------------------------------------------------------ registry


def test_registry_stores_only_a_hash_and_revokes(store: Store) -> None:
    registry = Registry(store.database)
    registration, token = registry.add(H.PTCL)
    assert token.startswith("rpv1_") and len(token) > 40
    with store.database.reading() as conn:
        rows = [list(r) for r in conn.execute(text("SELECT * FROM vantages"))]
    dump = json.dumps(rows, default=str)
    assert token not in dump and token[5:] not in dump
    assert registry.authenticate(token) == registration
    assert registry.authenticate(token + "x") is None
    [listed] = registry.list()
    assert listed.vantage == H.PTCL and not listed.revoked
    assert registry.revoke("lahore-ptcl").revoked
    found = registry.authenticate(token)
    assert found is not None and found.revoked


def test_a_name_is_registered_once(store: Store) -> None:
    from probe.errors import UsageError

    registry = Registry(store.database)
    registry.add(H.PTCL)
    with pytest.raises(UsageError, match="already registered"):
        registry.add(H.PTCL)
    with pytest.raises(UsageError, match="name"):
        registry.add(Vantage(name="bad name; drop"))
    with pytest.raises(UsageError, match="no registered vantage"):
        registry.revoke("nobody")


# ------------------------------------------------------------------ uploads


def test_upload_stores_the_batch_under_the_tokens_vantage(
    store: Store, token: str, client: TestClient
) -> None:
    items = H.batch(5)
    answer = post(client, token, H.jsonl(items))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["added"] == 5 and body["duplicates"] == []
    assert body["ids"] == sorted(i.row.id for i in items)
    assert count(store) == 5 and count(store, "observations") == 5
    rows = list(store.iter_rows(oldest_first=True))
    assert [r.id for r in rows] == [i.row.id for i in items]
    assert {r.vantage for r in rows} == {H.PTCL}
    stored = store.get(items[0].row.id)
    assert stored is not None and stored.observations == items[0].observations
    [registration] = Registry(store.database).list()
    assert registration.last_seen_at is not None


def test_a_retried_batch_adds_nothing_and_says_what_was_there(
    store: Store, token: str, client: TestClient
) -> None:
    items = H.batch(4)
    assert post(client, token, H.jsonl(items[:2])).json()["added"] == 2
    again = post(client, token, H.jsonl(items)).json()
    assert again["added"] == 2
    assert again["duplicates"] == sorted(i.row.id for i in items[:2])
    assert len(again["ids"]) == 4
    assert count(store) == 4 and count(store, "observations") == 4


def test_gzip_bodies_are_accepted(store: Store, token: str, client: TestClient) -> None:
    answer = post(client, token, gzip.compress(H.jsonl(H.batch(3))), **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.json()["added"] == 3


def test_the_collector_database_is_an_ordinary_reachprobe_database(
    store: Store,
    client: TestClient,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(store.database)
    tokens = {v.name: registry.add(v)[1] for v in (H.PTCL, H.JAZZ)}
    for v in (H.PTCL, H.JAZZ):
        assert post(client, tokens[v.name], H.jsonl(H.batch(2, v))).status_code == 200
    status, out, _ = H.run_cli(capsys, monkeypatch, "export", "csv", "--jobs", "1", "--db", db_url)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4
    seen = {(r["vantage"], r["country"], r["asn"], r["network"]) for r in rows}
    assert seen == {("lahore-ptcl", "PK", "17557", "PTCL"), ("karachi-jazz", "PK", "24499", "Jazz")}
    status, out, _ = H.run_cli(capsys, monkeypatch, "export", "jsonl", "--db", db_url)
    names = {json.loads(line)["vantage"]["name"] for line in out.splitlines()}
    assert status == 0 and names == {"lahore-ptcl", "karachi-jazz"}
    status, out, _ = H.run_cli(capsys, monkeypatch, "measurements", "--db", db_url, "--json")
    assert status == 0 and {m["vantage"]["asn"] for m in json.loads(out)} == {17557, 24499}


def test_report_over_the_collector_compares_the_isps(
    store: Store,
    client: TestClient,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(store.database)
    for v, blocked in ((H.PTCL, True), (H.JAZZ, False)):
        token = registry.add(v)[1]
        items = H.batch(6, v, blocked=blocked)
        assert post(client, token, H.jsonl(items)).status_code == 200
    status, out, _ = H.run_cli(capsys, monkeypatch, "report", "--db", db_url)
    assert status == 0, out
    assert "Comparing vantages" in out
    ptcl = next(line for line in out.splitlines() if line.startswith("AS17557 PTCL  x.com"))
    jazz = next(line for line in out.splitlines() if line.startswith("AS24499 Jazz  x.com"))
    assert " 100% " in ptcl and "tls.reset" in ptcl
    assert " 0% " in jazz and jazz.rstrip().endswith("-")
    status, out, _ = H.run_cli(capsys, monkeypatch, "report", "--csv", "--db", db_url)
    rows = list(csv.DictReader(io.StringIO(out)))
    shares = {(r["network"], r["endpoint"]): r["blocked_share"] for r in rows}
    assert status == 0 and shares == {("PTCL", "x.com"): "1.0000", ("Jazz", "x.com"): "0.0000"}


# ------------------------------------------------------------------ refusals


def test_missing_wrong_and_revoked_tokens_are_refused(store: Store, token: str) -> None:
    body = H.jsonl(H.batch(1))
    with client_for(store, auth_failure_rate=0) as client:
        assert post(client, None, body).status_code == 401
        assert "missing token" in post(client, None, body).json()["error"]
        assert post(client, "rpv1_" + "A" * 43, body).status_code == 401
        assert post(client, "not-a-token", body).status_code == 401
        answer = client.post(URL, content=body, headers={"Authorization": f"Basic {token}"})
        assert answer.status_code == 401
        Registry(store.database).revoke("lahore-ptcl")
        answer = post(client, token, body)
        assert answer.status_code == 403 and "revoked" in answer.json()["error"]
        whoami = client.get(protocol.VANTAGE_PATH, headers={"Authorization": f"Bearer {token}"})
        assert whoami.status_code == 403
    assert count(store) == 0


def test_a_token_cannot_upload_another_vantages_measurements(
    store: Store, token: str, client: TestClient
) -> None:
    mine = H.batch(2)
    theirs = H.measurement(H.JAZZ)
    answer = post(client, token, H.jsonl([*mine, theirs]))
    assert answer.status_code == 403
    assert "line 3" in answer.json()["error"] and "karachi-jazz" in answer.json()["error"]
    assert count(store) == 0  # not even the two good ones


def test_an_id_stored_for_another_vantage_is_a_conflict(store: Store, client: TestClient) -> None:
    registry = Registry(store.database)
    jazz_token = registry.add(H.JAZZ)[1]
    ptcl_token = registry.add(H.PTCL)[1]
    theirs = H.measurement(H.JAZZ)
    assert post(client, jazz_token, H.jsonl([theirs])).status_code == 200
    forged = H.with_vantage(theirs, H.PTCL)
    fresh = H.measurement(H.PTCL)
    answer = post(client, ptcl_token, H.jsonl([fresh, forged]))
    assert answer.status_code == 409, answer.text
    assert count(store) == 1  # the fresh one was rolled back with the batch
    [row] = store.iter_rows()
    assert row.vantage == H.JAZZ


def _broken(path: str, value: Any) -> dict[str, Any]:
    data = H.record()
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"{not json\n", 400, "line 3: invalid JSON"),
        (b"\xff\xfe\n", 400, "not UTF-8"),
        (b'{"x": NaN}\n', 400, "invalid JSON"),
        (b"[1, 2]\n", 422, "must be a JSON object"),
        (H.line(_broken("schema", "probe.measurement/9")), 422, "schema"),
        (H.line(_broken("id", "not-a-uuid")), 422, "line 3"),
        (H.line(_broken("observations.domain", 5)), 422, "observations.domain: expected a string"),
        (H.line(_broken("observations.duration_ms", True)), 422, "duration_ms: expected a number"),
        (H.line(_broken("observations.dns", {"a": 1})), 422, "observations.dns: expected a list"),
        (H.line(_broken("observations.surprise", 1)), 422, "unknown field 'surprise'"),
        (H.line(_broken("observations.started_at", "yesterday")), 422, "RFC 3339"),
        (H.line(_broken("observations.started_at", "1970-01-01T00:00:00Z")), 422, "implausible"),
        (H.line(_broken("observations.started_at", "2999-01-01T00:00:00Z")), 422, "implausible"),
        (H.line(_broken("verdict.status", "hacked")), 422, "verdict.status: unknown value"),
        (H.line(_broken("observations.endpoints.0.port", 2**70)), 422, "expected an integer"),
        (H.line(_broken("observations.domain", "a" * 300)), 422, "domain longer than 253"),
        (H.line(_broken("vantage", KeyError)), 422, "missing field 'vantage'"),
        (H.line(_broken("observations.settings", KeyError)), 422, "missing field 'settings'"),
    ],
)
def test_malformed_batches_are_4xx_with_a_reason_and_store_nothing(
    store: Store, token: str, client: TestClient, data: bytes, status: int, reason: str
) -> None:
    good = H.jsonl(H.batch(2))
    answer = post(client, token, good + data)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]
    assert count(store) == 0


def test_duplicate_ids_within_one_batch_are_refused(
    store: Store, token: str, client: TestClient
) -> None:
    item = H.measurement()
    answer = post(client, token, H.jsonl([item, item]))
    assert answer.status_code == 422 and "twice" in answer.json()["error"]


def test_oversized_bodies_and_batches_are_refused(store: Store, token: str) -> None:
    with client_for(store, max_body=40_000, max_batch=3) as client:
        big = H.jsonl(H.batch(20))
        assert post(client, token, big).status_code == 413
        # no Content-Length: a chunked body is counted as it arrives
        chunks = iter([big[:30_000], big[30_000:]])
        answer = client.post(
            URL,
            content=chunks,
            headers={"Authorization": f"Bearer {token}", "Content-Type": protocol.CONTENT_TYPE},
        )
        assert answer.status_code == 413
        answer = post(client, token, H.jsonl(H.batch(4)))
        assert answer.status_code == 413 and "more than 3" in answer.json()["error"]
        bomb = gzip.compress(b" " * 10_000_000)
        answer = post(client, token, bomb, **{"Content-Encoding": "gzip"})
        assert answer.status_code == 413 and "decompressed" in answer.json()["error"]
        assert post(client, token, b"garbage", **{"Content-Encoding": "gzip"}).status_code == 400
        assert post(client, token, b"x", **{"Content-Encoding": "br"}).status_code == 415
        html = post(client, token, H.jsonl(H.batch(1)), **{"Content-Type": "text/html"})
        assert html.status_code == 415
    assert count(store) == 0


def test_uploads_are_rate_limited_per_vantage(store: Store, token: str) -> None:
    with client_for(store, upload_rate=0.01, upload_burst=2) as client:
        codes = [post(client, token, H.jsonl(H.batch(1))).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        answer = post(client, token, H.jsonl(H.batch(1)))
        assert int(answer.headers["retry-after"]) >= 1
    with client_for(store, auth_failure_rate=0.01, auth_failure_burst=2) as client:
        codes = [post(client, "rpv1_wrong", b"").status_code for _ in range(3)]
        assert codes == [401, 401, 429]


def test_whoami_and_health(token: str, client: TestClient) -> None:
    answer = client.get(protocol.VANTAGE_PATH, headers={"Authorization": f"Bearer {token}"})
    assert answer.json() == {
        "name": "lahore-ptcl",
        "country": "PK",
        "asn": 17557,
        "network": "PTCL",
    }
    assert client.get(protocol.HEALTH_PATH).json() == {"status": "ok"}
    assert client.get("/nowhere").status_code == 404
    assert client.get(URL).status_code == 405


def test_the_collector_never_logs_tokens(
    store: Store, token: str, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post(client, token, H.jsonl(H.batch(1)))
    post(client, token, b"{bad\n")
    post(client, token + "x", b"")
    post(client, "rpv1_guess", b"")
    Registry(store.database).revoke("lahore-ptcl")
    post(client, token, H.jsonl(H.batch(1)))
    text_logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "lahore-ptcl" in text_logged and "refused" in text_logged
    assert token[5:15] not in text_logged and "rpv1_guess" not in text_logged
