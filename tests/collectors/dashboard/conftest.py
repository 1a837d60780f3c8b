"""Fixtures of the dashboard tests: both storage backends, as in tests/storage."""

from __future__ import annotations

from tests.storage.conftest import db_url, pg_server, pg_url

__all__ = ["db_url", "pg_server", "pg_url"]
