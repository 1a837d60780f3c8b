"""Measurements the database would not take, kept on disk until it does.

When the database is locked for longer than its busy timeout, full, or gone,
the daemon still holds a complete measurement in memory.  Dropping it would
lose data silently, so it is appended to a JSON Lines file in the lossless
format of ``probe export jsonl`` (each line fsynced), and imported at the next
successful write.  Import is idempotent on the measurement's UUID, so a
crash between import and truncation cannot duplicate anything.  The file can
also be imported by hand with ``probe import jsonl FILE``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.observations import DomainObservations
    from probe.verdict import Verdict
    from storage.records import StoredMeasurement, Vantage
    from storage.store import Store

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, obs: DomainObservations, verdict: Verdict, vantage: Vantage) -> str:
        """Append one measurement durably; returns its new UUID. Raises OSError."""
        from storage.jsonl import encode
        from storage.records import StoredMeasurement
        from storage.summary import measurement_row

        measurement_id = str(uuid.uuid4())
        row = measurement_row(measurement_id, vantage, obs, verdict)
        line = json.dumps(encode(StoredMeasurement(row, obs, verdict)), ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return measurement_id

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def drain(self, store: Store) -> int:
        """Import every spooled measurement into ``store``; returns how many were new.

        Raises StorageError (the spool is kept) when the database still
        refuses.  A line that cannot be decoded (a write torn by a power cut)
        is moved to ``<spool>.corrupt`` with a log line, never dropped.
        """
        if not self.pending():
            return 0
        items, corrupt = self._read()
        added, _ = store.import_measurements(items)
        if corrupt:
            with open(self.path.with_name(self.path.name + ".corrupt"), "a") as handle:
                handle.writelines(line + "\n" for line in corrupt)
            log.error("%d unreadable spooled lines moved to %s.corrupt", len(corrupt), self.path)
        self.path.unlink()
        return added

    def _read(self) -> tuple[list[StoredMeasurement], list[str]]:
        from storage.jsonl import decode

        items: list[StoredMeasurement] = []
        corrupt: list[str] = []
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                try:
                    items.append(decode(json.loads(text)))
                except ValueError:  # a torn or damaged line: keep it aside, never lose it
                    corrupt.append(text)
        return items, corrupt
