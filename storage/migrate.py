"""Schema migrations, driven programmatically (no alembic.ini at runtime).

Opening a store brings its schema to the newest revision this release
knows, so a database written by an older release upgrades in place; a
database from a newer release is refused rather than misread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from probe.errors import StorageError
from storage.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x70726F6265  # PostgreSQL advisory lock key ("probe")

# The newest revision in migrations/versions (a test checks it against
# Alembic's own idea of head).  Knowing it without Alembic lets an up-to-date
# database open without importing Alembic and Mako (~11 MB resident, which
# matters for a daemon on a Raspberry Pi).
SCHEMA_HEAD = "0009"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}


def current(db: Database) -> str | None:
    """The revision the database is at (None: no reachprobe schema yet)."""
    from alembic.runtime.migration import MigrationContext

    with db.reading() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _recorded_revision(db: Database) -> str | None:
    """The revision in alembic_version read with plain SQL (None when absent)."""
    try:
        with db.engine.connect() as conn:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except SQLAlchemyError:
        return None  # no table yet, or unreachable: the full path reports it properly
    return str(row[0]) if row is not None else None


def require_current(db: Database) -> None:
    """Refuse a read-only database whose schema is not this release's (it cannot be upgraded)."""
    present = _recorded_revision(db)
    if present == SCHEMA_HEAD:
        return
    if present is None:
        with db.reading() as conn:  # unreadable, or no reachprobe tables: say which
            conn.exec_driver_sql("SELECT 1 FROM alembic_version")
    raise StorageError(
        f"database {db.location()} has schema {present}, this release reads {SCHEMA_HEAD}; "
        "it is read-only here, so upgrade a writable copy first (probe db upgrade)"
    )


def upgrade(db: Database, target: str = "head") -> str | None:
    """Bring the schema to ``target`` in one transaction; returns the new revision."""
    if target == "head" and _recorded_revision(db) == SCHEMA_HEAD:
        return SCHEMA_HEAD  # the common case: nothing to do, Alembic not imported
    from alembic import command
    from alembic.util.exc import CommandError

    present = current(db)
    if present is not None and present not in known_revisions():
        raise StorageError(
            f"database {db.location()} has schema {present}, newer than this release "
            f"knows (up to {head()}); upgrade reachprobe"
        )
    wanted = head() if target == "head" else target
    if present == wanted:
        return present

    def run(conn: Connection) -> None:
        if not db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises migrations
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        try:
            command.upgrade(_config(conn), target)
        except CommandError as exc:
            raise StorageError(f"cannot migrate database {db.location()}: {exc}") from None

    db.write(run)
    return current(db)
