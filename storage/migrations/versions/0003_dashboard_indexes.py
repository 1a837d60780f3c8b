"""Indexes for the dashboard's queries (storage.dashboard).

The latest measurement of each vantage and domain is one index probe per pair
on (vantage_id, domain, started_at); a platform's domains are found by a
skip scan over (platform, domain), so neither query reads the whole table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_measurements_vantage_domain_started_at",
        "measurements",
        ["vantage_id", "domain", "started_at"],
    )
    op.create_index("ix_measurements_platform_domain", "measurements", ["platform", "domain"])


def downgrade() -> None:
    op.drop_index("ix_measurements_platform_domain", "measurements")
    op.drop_index("ix_measurements_vantage_domain_started_at", "measurements")
