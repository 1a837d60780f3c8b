"""Observations as JSON text on PostgreSQL, compressed with LZ4 (storage.models.JSONText).

JSONB parsed each ~5 KB document again on insert, and the default pglz
compressed it slowly: together the largest costs of a collector's ingest.
The documents are validated before they are stored and nothing queries
inside them.  LZ4 needs PostgreSQL 14 built with it (Debian's is); without
it the column keeps the server's default compression.  SQLite already keeps
JSON as text: unchanged.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None

LZ4 = """
DO $$
BEGIN
    EXECUTE 'ALTER TABLE observations ALTER COLUMN data SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'observations keep the default compression: %', SQLERRM;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE observations ALTER COLUMN data TYPE text USING data::text")
        op.execute(LZ4)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE observations ALTER COLUMN data TYPE jsonb USING data::jsonb")
