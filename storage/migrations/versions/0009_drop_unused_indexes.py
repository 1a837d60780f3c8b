"""Drop two indexes of ``measurements`` that no query uses.

``ix_measurements_platform`` is a prefix of ``ix_measurements_platform_domain``
(0003), which serves every filter on the platform; nothing filters or sorts
on ``first_failure`` alone (exports and listings read it as a column).  Each
index is one more entry to write per stored measurement: together ~5 µs of
PostgreSQL's ~0.1 ms per measurement a collector ingests (docs/benchmarks.md).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_measurements_platform", table_name="measurements")
    op.drop_index("ix_measurements_first_failure", table_name="measurements")


def downgrade() -> None:
    op.create_index("ix_measurements_first_failure", "measurements", ["first_failure"])
    op.create_index("ix_measurements_platform", "measurements", ["platform"])
