"""Alembic migrations of the reachprobe schema (run through storage.migrate)."""
