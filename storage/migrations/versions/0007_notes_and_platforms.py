"""Verdict notes apart from reasons; platform attribution of earlier checks.

A check of ``x.com`` alone used to be stored without a platform, so
``--platform x`` filters left it out.  Rows whose domain belongs to a shipped
platform profile (the domain itself or a subdomain of it) get that platform.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Frozen copy of probe/data/platforms.toml at this revision: a migration must
# not change when the shipped profiles do.
PLATFORMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x", ("x.com", "twitter.com", "api.x.com", "t.co", "abs.twimg.com", "pbs.twimg.com",
           "video.twimg.com")),
    ("youtube", ("www.youtube.com", "m.youtube.com", "i.ytimg.com", "youtubei.googleapis.com")),
    ("facebook", ("www.facebook.com", "m.facebook.com", "static.xx.fbcdn.net",
                  "graph.facebook.com")),
    ("whatsapp", ("web.whatsapp.com", "mmg.whatsapp.net", "g.whatsapp.net")),
    ("telegram", ("telegram.org", "web.telegram.org", "t.me")),
)  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("notes", JSON_DOCUMENT))
    measurements = sa.table(
        "measurements", sa.column("platform", sa.String), sa.column("domain", sa.String)
    )
    for platform, domains in PLATFORMS:
        matches = [measurements.c.domain == d for d in domains]
        matches += [measurements.c.domain.like(f"%.{d}") for d in domains]
        op.execute(
            measurements.update()
            .where(measurements.c.platform.is_(None), sa.or_(*matches))
            .values(platform=platform)
        )


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("notes")
