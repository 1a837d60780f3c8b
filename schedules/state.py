"""The daemon's own small state: per target, the last run, its outcome and the next run.

Measurements go to the database; this file holds what the database cannot:
when each target is due next (so a restart resumes the schedule instead of
re-checking everything at once or waiting a full interval), and runs that
produced no measurement (interrupted by a shutdown or a crash, or failed), so
that nothing is lost silently.  ``probe status`` reads it from another process.

Why a JSON file and not APScheduler's SQLAlchemyJobStore: the job store
pickles callables and triggers, which breaks across upgrades and config
changes (a new interval or target list must win over what was pickled), and
it would put a table the storage migrations do not know into their database.
The file is tiny, rewritten atomically (temp file, fsync, rename), so a kill
-9 or a power cut leaves either the old or the new version, never a torn one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.observations import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

OK = "saved"  # a measurement was stored
INTERRUPTED = "interrupted"  # cut short by a shutdown or a crash: nothing stored
FAILED = "failed"  # could not run or could not be stored (see ``last_error``)


@dataclass(frozen=True)
class TargetState:
    last_started: dt.datetime | None = None
    last_finished: dt.datetime | None = None
    last_outcome: str | None = None  # OK, INTERRUPTED or FAILED
    last_status: str | None = None  # the verdict status of the last stored measurement
    last_measurement: str | None = None  # its id
    last_error: str | None = None
    next_run: dt.datetime | None = None
    runs: int = 0
    interrupted: int = 0
    failed: int = 0

    @property
    def unfinished(self) -> bool:
        """A run started and never ended: the daemon died in the middle of it."""
        return self.last_started is not None and (
            self.last_finished is None or self.last_finished < self.last_started
        )


@dataclass(frozen=True)
class DaemonState:
    pid: int | None = None
    started_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None  # None while running (or after a crash)
    retention_last_run: dt.datetime | None = None
    upload_last_attempt: dt.datetime | None = None
    upload_last_success: dt.datetime | None = None  # the collector confirmed the backlog
    upload_last_error: str | None = None  # why the last attempt failed (None: it worked)
    targets: dict[str, TargetState] = field(default_factory=dict)

    @property
    def stop_unrecorded(self) -> bool:
        """A daemon started and never recorded its stop.  When no daemon holds the
        state lock, that one died uncleanly: killed (SIGKILL, out of memory), crashed
        or lost power."""
        return self.pid is not None and self.stopped_at is None

    def unclean_stop(self) -> str:
        """Says so, for ``probe status`` and its health check."""
        return (
            f"it stopped uncleanly (pid {self.pid} ended without recording a stop: "
            "killed, crashed or a power cut)"
        )


class StateFile:
    """Load and atomically rewrite the state; all writes come from one thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.state = DaemonState()
        self._failing: str | None = None  # the last write error, logged once

    def load(self) -> DaemonState:
        """The stored state; an unreadable file is logged and treated as empty."""
        try:
            data = json.loads(self.path.read_text("utf-8"))
            self.state = _decode(data)
        except FileNotFoundError:
            self.state = DaemonState()
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable daemon state %s: %s", self.path, exc)
            self.state = DaemonState()
        return self.state

    def save(self) -> None:
        """Write the state; a full disk or an unwritable folder is logged, not raised.

        The state only says when targets are due: losing an update costs at
        most a re-run after a restart, while raising would stop the checks
        themselves (a full disk used to stop all measuring).
        """
        try:
            self._write()
        except OSError as exc:
            if self._failing != exc.strerror:
                log.error("cannot write the daemon state %s (%s); measuring goes on, "
                          "the schedule is kept in memory", self.path, exc.strerror)  # fmt: skip
            self._failing = exc.strerror
            return
        if self._failing is not None:
            log.warning("the daemon state %s is written again", self.path)
            self._failing = None

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps(_encode(self.state), indent=1, sort_keys=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def target(self, domain: str) -> TargetState:
        return self.state.targets.get(domain, TargetState())

    def update_target(self, domain: str, **changes: Any) -> TargetState:
        new = dataclasses.replace(self.target(domain), **changes)
        targets = dict(self.state.targets)
        targets[domain] = new
        self.state = dataclasses.replace(self.state, targets=targets)
        self.save()
        return new

    def update(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self.state, **changes)
        self.save()


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    return value


_TIMES = {"last_started", "last_finished", "next_run", "started_at", "stopped_at"}
_TIMES |= {"retention_last_run", "upload_last_attempt", "upload_last_success"}


_COUNTS = {"pid", "runs", "interrupted", "failed"}


def _fields(cls: type[Any], data: Any) -> dict[str, Any]:
    """The fields of ``cls`` in ``data``, each of its type: a file edited by hand
    or by another program is refused as a whole (ValueError), never half-read
    into a state the daemon or ``probe status`` then trips over."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names or key == "targets":
            continue
        if value is None and key not in _COUNTS - {"pid"}:
            pass  # not set (a count always is)
        elif key in _COUNTS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key!r} is not a number")
        elif not isinstance(value, str):
            raise ValueError(f"{key!r} is not a string")
        elif key in _TIMES:
            value = parse_rfc3339(value)
        out[key] = value
    return out


def _decode(data: Any) -> DaemonState:
    state = _fields(DaemonState, data)
    targets = data.get("targets", {})
    if not isinstance(targets, dict):
        raise ValueError("'targets' is not a JSON object")
    decoded = {domain: TargetState(**_fields(TargetState, raw)) for domain, raw in targets.items()}
    return DaemonState(**state, targets=decoded)
