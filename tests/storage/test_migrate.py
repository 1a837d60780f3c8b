"""Migrations: an older database upgrades without loss; models match migrations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from probe.errors import StorageError
from storage import Store, TimelineEvent
from storage import migrate as migrations
from storage.database import Database, resolve_url
from storage.models import Base
from tests.storage import factories as F


def _upgrade_to(db: Database, revision: str) -> None:
    db.write(lambda conn: command.upgrade(migrations._config(conn), revision))


def test_database_at_0001_upgrades_to_head_without_loss(db_url: str) -> None:
    db = Database(resolve_url(db_url))
    _upgrade_to(db, "0001")
    assert migrations.current(db) == "0001"
    # A measurement written by the first release, with that release's SQL.
    obs = F.blocked_sni()
    from probe.observations import to_dict

    def first_release(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(
            text(
                "INSERT INTO vantages (id, key, name, country, asn)"
                " VALUES (7, 'k', 'old', 'PK', 17557)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO measurements (id, vantage_id, domain, input, platform, started_at,"
                " duration_ms, resolver, probe_version, stored_at, status, blocking, trigger,"
                " reasons, blockpage, https_ok, classifier_version, dns_answers, control_answers,"
                " first_failure, tls_failures, http_status, http_failures, http_title)"
                " VALUES ('11111111-2222-4333-8444-555555555555', 7, 'x.com', 'x.com', 'x',"
                " :started, 250.75, 'udp://192.0.2.53:53', '0.0.9', :started, 'blocked',"
                " 'tls.reset', 'sni', :reasons, NULL, NULL, '1', '198.51.100.7', '', "
                " 'tls:connection_reset', 'connection_reset', NULL, '', NULL)"
            ),
            {"started": dt.datetime(2024, 2, 17, 17, 5), "reasons": json.dumps(["old reason"])},
        )
        conn.execute(
            text("INSERT INTO observations (measurement_id, data) VALUES (:id, :data)"),
            {"id": "11111111-2222-4333-8444-555555555555", "data": json.dumps(to_dict(obs))},
        )

    db.write(first_release)
    db.dispose()

    with Store.open(db_url) as store:  # opening migrates
        assert migrations.current(store.database) == migrations.head() == migrations.SCHEMA_HEAD
        got = store.get("11111111")
        assert got is not None
        assert got.observations == obs
        assert got.row.vantage.name == "old" and got.row.vantage.asn == 17557
        assert got.verdict.reasons == ("old reason",)
        assert got.row.started_at == dt.datetime(2024, 2, 17, 17, 5, tzinfo=dt.UTC)
        # The new revision's table works, and new saves go beside the old row.
        event = TimelineEvent(dt.date(2024, 2, 17), "PK", "x", "block", "X suspended", "press")
        assert store.add_events([event]) == 1
        store.save(F.accessible(), F.ACCESSIBLE, F.VANTAGE)
        assert store.count() == 2


def test_0007_backfills_platforms_and_leaves_notes_empty(db_url: str) -> None:
    """Checks of a platform's domain stored without the platform (``probe check
    x.com`` before 0007) get it; other domains and attributed rows keep theirs."""
    db = Database(resolve_url(db_url))
    _upgrade_to(db, "0006")
    rows = {  # id suffix: (domain, platform before)
        "01": ("x.com", None),
        "02": ("api.x.com", None),
        "03": ("help.x.com", None),  # a subdomain of a profile domain
        "04": ("www.youtube.com", None),
        "05": ("example.com", None),
        "06": ("notx.com", None),  # not a subdomain of x.com
        "07": ("pbs.twimg.com", "mine"),  # attributed already: kept
    }

    def old_rows(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(text("INSERT INTO vantages (id, key, name) VALUES (1, 'k', 'v')"))
        for suffix, (domain, platform) in rows.items():
            conn.execute(
                text(
                    "INSERT INTO measurements (id, vantage_id, domain, input, platform,"
                    " started_at, duration_ms, resolver, probe_version, stored_at, status,"
                    " blocking, reasons, classifier_version, dns_answers, control_answers,"
                    " tls_failures, http_failures) VALUES (:id, 1, :domain, :input, :platform,"
                    " :at, 1, 'r', '0', :at, 'accessible', '', '[]', '1', '', '', '', '')"
                ),
                {
                    "id": f"00000000-0000-4000-8000-0000000000{suffix}",
                    "domain": domain,
                    "input": domain,
                    "platform": platform,
                    "at": dt.datetime(2024, 3, 1),
                },
            )

    db.write(old_rows)
    _upgrade_to(db, "0007")
    with db.reading() as conn:
        got: dict[str, str | None] = dict(
            conn.execute(text("SELECT domain, platform FROM measurements")).all()
        )
        notes = conn.execute(text("SELECT notes FROM measurements")).scalars().all()
    db.dispose()
    assert got == {
        "x.com": "x",
        "api.x.com": "x",
        "help.x.com": "x",
        "www.youtube.com": "youtube",
        "example.com": None,
        "notx.com": None,
        "pbs.twimg.com": "mine",
    }
    assert notes == [None] * len(rows)


def test_0007_profiles_are_the_shipped_ones() -> None:
    """The migration's frozen copy was taken from the shipped profiles (when they
    change, a new migration backfills the new domains and this test moves to it)."""
    import importlib

    from probe.targets import _parse_platforms

    shipped_text = (Path(__file__).parents[2] / "probe/data/platforms.toml").read_text()
    shipped = {p.name: p.domains for p in _parse_platforms(shipped_text, "shipped").values()}
    migration = importlib.import_module("storage.migrations.versions.0007_notes_and_platforms")
    assert dict(migration.PLATFORMS) == shipped


def test_models_match_the_migrations(db_url: str) -> None:
    with Store.open(db_url) as store, store.database.reading() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_newer_schema_is_refused(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.database.write(
            lambda conn: conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        )
    with pytest.raises(StorageError, match="schema 0099, newer than this release"):
        Store.open(db_url)


def test_open_without_migrate_leaves_the_schema_alone(db_url: str) -> None:
    with Store.open(db_url, migrate=False) as store:
        assert migrations.current(store.database) is None
        assert migrations.upgrade(store.database) == migrations.SCHEMA_HEAD
        assert migrations.upgrade(store.database) == migrations.SCHEMA_HEAD


def test_schema_head_constant_is_alembics_head() -> None:
    """SCHEMA_HEAD lets an up-to-date database open without importing Alembic."""
    from storage import migrate

    assert migrate.head() == migrate.SCHEMA_HEAD


def test_opening_an_up_to_date_store_does_not_import_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'p.db'}"
    code = (
        "import sys; from storage import Store; "
        f"Store.open({url!r}).close(); "  # creates and migrates: Alembic needed
        "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith(('alembic', 'mako'))]; "
        f"Store.open({url!r}).close(); "
        "print(any(m.startswith('alembic') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_0008_keeps_observations_as_lz4_json_text_on_postgresql(pg_url: str) -> None:
    """What the collector inserts as text reads back as the same observations."""
    with Store.open(pg_url) as store:
        saved = store.save(F.blocked_sni(), F.BLOCKED, F.VANTAGE)
        with store.database.reading() as conn:
            kind, compression = conn.execute(
                text(
                    "SELECT format_type(atttypid, atttypmod), attcompression FROM pg_attribute"
                    " WHERE attrelid = 'observations'::regclass AND attname = 'data'"
                )
            ).one()
            raw = conn.execute(text("SELECT data FROM observations")).scalar_one()
        got = store.get(saved)
    assert (kind, compression) == ("text", "l")
    assert json.loads(raw)["domain"] == "x.com"
    assert got is not None and got.observations == F.blocked_sni()


def test_0009_drops_the_indexes_no_query_uses(db_url: str) -> None:
    """The platform filter keeps its index (platform, domain); the two dropped ones
    only cost every insert."""
    from sqlalchemy import inspect

    with Store.open(db_url) as store:
        names = {ix["name"] for ix in inspect(store.database.engine).get_indexes("measurements")}
    assert not names & {"ix_measurements_platform", "ix_measurements_first_failure"}
    assert "ix_measurements_platform_domain" in names
