"""Reported events (blocks, restorations, court orders) to read measurements against.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

# Frozen copies: a migration must not change when storage.records does.
KINDS = ("block", "partial", "restore", "shutdown", "court", "statement", "disruption", "other")
CERTAINTIES = ("high", "medium", "low")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "timeline_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("time", sa.Time),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("certainty", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "date", "country", "platform", "kind", "title", name="uq_timeline_event"
        ),
        sa.CheckConstraint(_one_of("kind", KINDS), name="ck_timeline_kind"),
        sa.CheckConstraint(_one_of("certainty", CERTAINTIES), name="ck_timeline_certainty"),
    )
    op.create_index(
        "ix_timeline_country_platform_date", "timeline_events", ["country", "platform", "date"]
    )


def downgrade() -> None:
    op.drop_table("timeline_events")
