"""Keeping every measurement: SQLite by default, PostgreSQL when shared.

Public API: :class:`Store` and the records it takes and returns.  Exports
live in :mod:`storage.export` (CSV) and :mod:`storage.jsonl` (JSON Lines).
"""

from storage.records import (
    MeasurementFilter,
    MeasurementRow,
    StoredMeasurement,
    TimelineEvent,
    Vantage,
)
from storage.store import Store

__all__ = [
    "MeasurementFilter",
    "MeasurementRow",
    "Store",
    "StoredMeasurement",
    "TimelineEvent",
    "Vantage",
]
