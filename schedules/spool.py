"""Measurements the database would not take, kept on disk until it does.

When the database is locked for longer than its busy timeout, full, or gone,
the daemon still holds a complete measurement in memory.  Dropping it would
lose data silently, so it is appended to a JSON Lines file in the lossless
format of ``probe export jsonl`` (each line fsynced), and imported at the next
successful write.  The file can also be imported by hand with
``probe import jsonl FILE``.

Concurrency: checks finish on the event loop while a drain runs in a worker
thread, and two checks may finish together.  Appends hold ``_append``; a
drain first *renames* the spool to ``<spool>.draining`` under that same lock
(so no append is half-written into it and every later append goes to a fresh
spool), then imports the renamed file without holding the lock.  Only one
drain runs at a time; a second caller does not wait for it (its own
measurement is saved regardless).  Import is idempotent on the measurement's
UUID, so a crash between import and unlink cannot duplicate anything: the
``.draining`` file left behind is imported again, first, at the next drain.

Replay streams the file in batches of ``DRAIN_BATCH``: memory stays flat
however long the outage was.  If even the spool cannot be written (disk
full), the measurement is kept in memory and written or stored at the next
chance; it is only lost if the daemon stops before either works.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from probe.errors import StorageError

if TYPE_CHECKING:
    from probe.observations import DomainObservations
    from probe.verdict import Verdict
    from storage.records import StoredMeasurement, Vantage
    from storage.store import Store

log = logging.getLogger(__name__)

DRAIN_BATCH = 100  # measurements per import transaction (about 5 MB of observations)
MEMORY_LIMIT = 200  # measurements kept in memory while the spool itself cannot be written
FILE_MODE = 0o600  # measurements name the vantage's network: not for other local users


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.draining = path.with_name(path.name + ".draining")
        self.corrupt = path.with_name(path.name + ".corrupt")
        self._append = threading.Lock()  # appends and the drain's rename
        self._drain = threading.Lock()  # one drain at a time
        self._memory: list[str] = []  # lines the disk would not take (disk full)

    @property
    def in_memory(self) -> int:
        """Measurements held only in this process (the spool file could not be written)."""
        return len(self._memory)

    def add(
        self,
        obs: DomainObservations,
        verdict: Verdict,
        vantage: Vantage,
        measurement_id: str | None = None,
    ) -> str:
        """Append one measurement durably; returns its UUID (``measurement_id`` or new).

        Raises OSError when the file cannot be written; the measurement is
        then kept in memory (see ``in_memory``) and retried at the next add or
        drain, so the caller only has to say where it is.
        """
        from storage.jsonl import encode
        from storage.records import StoredMeasurement
        from storage.summary import measurement_row

        measurement_id = measurement_id or str(uuid.uuid4())
        row = measurement_row(measurement_id, vantage, obs, verdict)
        line = json.dumps(encode(StoredMeasurement(row, obs, verdict)), ensure_ascii=False)
        with self._append:
            self._memory.append(line)
            try:
                self._write_memory()
            except OSError:
                self._trim_memory()
                raise
        return measurement_id

    def _trim_memory(self) -> None:
        dropped = len(self._memory) - MEMORY_LIMIT
        if dropped > 0:
            del self._memory[:dropped]
            log.error("spool %s: %d measurements held in memory LOST (limit %d)",
                      self.path, dropped, MEMORY_LIMIT)  # fmt: skip

    def _write_memory(self) -> None:
        """Append every line held in memory to the spool file (``_append`` held)."""
        if not self._memory:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        size = os.fstat(fd).st_size
        try:
            data = "".join(line + "\n" for line in self._memory).encode()
            # A line torn by a crash or a full disk must not swallow the next one.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # leave no partial line behind if we can
            raise
        finally:
            os.close(fd)
        self._memory.clear()

    def close(self) -> None:
        """Last chance for measurements held in memory: write them, or say they are lost."""
        with self._append:
            try:
                self._write_memory()
            except OSError as exc:
                log.error("spool %s: %s; %d measurements held in memory LOST",
                          self.path, exc.strerror, len(self._memory))  # fmt: skip

    def pending(self) -> bool:
        return bool(self._memory) or any(_size(p) > 0 for p in (self.draining, self.path))

    def drain(self, store: Store) -> int:
        """Import every spooled measurement into ``store``; returns how many were new.

        Raises StorageError (the spool is kept) when the database still
        refuses.  A line that cannot be decoded (a write torn by a power cut)
        is moved to ``<spool>.corrupt`` with a log line, never dropped.
        Returns 0 at once when another thread is draining.
        """
        if not self._drain.acquire(blocking=False):
            return 0
        try:
            added = self._import_memory(store)
            while True:
                with self._append:
                    if _size(self.draining) == 0 and _size(self.path) > 0:
                        os.replace(self.path, self.draining)
                if _size(self.draining) == 0:
                    return added
                added += self._import(store)
        finally:
            self._drain.release()

    def _import_memory(self, store: Store) -> int:
        """Store the measurements the spool file would not take (disk full)."""
        from storage.jsonl import decode

        with self._append:
            taken, self._memory = self._memory, []
        try:
            added, _ = store.import_measurements(decode(json.loads(line)) for line in taken)
        except BaseException:
            with self._append:
                self._memory[:0] = taken
                self._trim_memory()
            raise
        return added

    def _import(self, store: Store) -> int:
        corrupt: list[str] = []
        added, _ = store.import_measurements(self._read(corrupt), batch_size=DRAIN_BATCH)
        if corrupt:  # only once the rest is stored: a retried drain must not repeat them
            try:
                fd = os.open(self.corrupt, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
                with open(fd, "a", encoding="utf-8") as handle:
                    handle.writelines(text + "\n" for text in corrupt)
            except OSError as exc:  # keeping the draining file beats dropping the lines
                raise StorageError(f"cannot set aside damaged spool lines: {exc}") from exc
            log.error("%d unreadable spooled lines moved to %s", len(corrupt), self.corrupt)
        self.draining.unlink()
        return added

    def _read(self, corrupt: list[str]) -> Iterator[StoredMeasurement]:
        """The measurements of the draining file, one at a time; bad lines go to ``corrupt``."""
        from storage.jsonl import decode

        with open(self.draining, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                try:
                    item = decode(json.loads(text))
                except ValueError:  # a torn or damaged line: keep it aside, never lose it
                    corrupt.append(text)
                    continue
                yield item


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0
