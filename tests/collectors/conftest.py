"""Collector fixtures: the storage backends (SQLite file, throwaway PostgreSQL) and
a registered vantage with measurements to upload."""

from __future__ import annotations

from tests.storage.conftest import db_url, pg_server, pg_url

__all__ = ["db_url", "pg_server", "pg_url"]
