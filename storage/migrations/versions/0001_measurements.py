"""Vantage points, measurements and their observations (first release).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "vantages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2)),
        sa.Column("asn", sa.BigInteger),
        sa.Column("network", sa.Text),
        sa.Column("notes", sa.Text),
    )
    op.create_index("ix_vantages_name", "vantages", ["name"])
    op.create_table(
        "measurements",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vantage_id", sa.Integer, sa.ForeignKey("vantages.id"), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("platform", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("resolver", sa.Text, nullable=False),
        sa.Column("probe_version", sa.String(64), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("blocking", sa.Text, nullable=False),
        sa.Column("trigger", sa.String(16)),
        sa.Column("reasons", JSON_DOCUMENT, nullable=False),
        sa.Column("blockpage", sa.Text),
        sa.Column("https_ok", sa.Boolean),
        sa.Column("classifier_version", sa.String(32), nullable=False),
        sa.Column("dns_answers", sa.Text, nullable=False),
        sa.Column("control_answers", sa.Text, nullable=False),
        sa.Column("first_failure", sa.String(64)),
        sa.Column("tls_failures", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("http_failures", sa.Text, nullable=False),
        sa.Column("http_title", sa.Text),
        sa.Column("tcp_ms", sa.Float),
        sa.Column("tls_ms", sa.Float),
        sa.Column("http_ms", sa.Float),
    )
    op.create_index("ix_measurements_started_at", "measurements", ["started_at", "id"])
    op.create_index("ix_measurements_domain_started_at", "measurements", ["domain", "started_at"])
    op.create_index(
        "ix_measurements_vantage_started_at", "measurements", ["vantage_id", "started_at"]
    )
    op.create_index("ix_measurements_platform", "measurements", ["platform"])
    op.create_index("ix_measurements_status", "measurements", ["status"])
    op.create_index("ix_measurements_first_failure", "measurements", ["first_failure"])
    op.create_table(
        "observations",
        sa.Column(
            "measurement_id",
            sa.String(36),
            sa.ForeignKey("measurements.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("data", JSON_DOCUMENT, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("measurements")
    op.drop_table("vantages")
