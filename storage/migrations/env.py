"""Alembic environment: always online, on the connection storage.migrate hands over.

The caller owns the transaction (on SQLite a BEGIN IMMEDIATE), so a
migration either applies completely or not at all.
"""

from __future__ import annotations

from alembic import context

from storage.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    transactional_ddl=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
