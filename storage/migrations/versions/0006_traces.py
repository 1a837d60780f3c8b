"""Traces: where on the path a target was interfered with (``probe trace``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

# Frozen copy: a migration must not change when storage.models does.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "traces",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vantage_id", sa.Integer, sa.ForeignKey("vantages.id"), nullable=False),
        sa.Column(
            "measurement_id",
            sa.String(36),
            sa.ForeignKey("measurements.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interference", sa.String(32)),
        sa.Column("censor_hop", sa.Integer),
        sa.Column("censor_address", sa.Text),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("data", JSON_DOCUMENT, nullable=False),
    )
    op.create_index("ix_traces_domain_started_at", "traces", ["domain", "started_at"])
    op.create_index("ix_traces_measurement_id", "traces", ["measurement_id"])


def downgrade() -> None:
    op.drop_table("traces")
