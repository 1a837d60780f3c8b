"""Collector registrations on vantages, and the probe's record of confirmed uploads.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vantages", sa.Column("token_hash", sa.String(64)))
    op.add_column(
        "vantages", sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("vantages", sa.Column("created_at", sa.DateTime(timezone=True)))
    op.add_column("vantages", sa.Column("last_seen_at", sa.DateTime(timezone=True)))
    op.create_index("ux_vantages_token_hash", "vantages", ["token_hash"], unique=True)
    registered = sa.text("token_hash IS NOT NULL")
    op.create_index(
        "ux_vantages_registered_name",
        "vantages",
        ["name"],
        unique=True,
        sqlite_where=registered,
        postgresql_where=registered,
    )
    op.create_table(
        "uploads",
        sa.Column("collector", sa.String(500), primary_key=True),
        sa.Column(
            "measurement_id",
            sa.String(36),
            sa.ForeignKey("measurements.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_uploads_collector_uploaded_at", "uploads", ["collector", "uploaded_at"])


def downgrade() -> None:
    op.drop_table("uploads")
    op.drop_index("ux_vantages_registered_name", "vantages")
    op.drop_index("ux_vantages_token_hash", "vantages")
    with op.batch_alter_table("vantages") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("created_at")
        batch.drop_column("revoked")
        batch.drop_column("token_hash")
