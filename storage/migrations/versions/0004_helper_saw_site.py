"""Whether the control helper saw the site working (CSV column helper_saw_site).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Older measurements had no helper: NULL is their true value, nothing to backfill.
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("helper_saw_site", sa.String(8)))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("helper_saw_site")
