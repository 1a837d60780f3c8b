"""schedules.state: round trip, atomic rewrite, unreadable files."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from schedules.state import INTERRUPTED, DaemonState, StateFile, TargetState

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_round_trip_and_no_temp_file_left(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "sub" / "daemon.json")
    state.update(pid=42, started_at=T0)
    state.update_target("x.com", last_started=T0, next_run=T0 + dt.timedelta(minutes=15))
    state.update_target("x.com", last_outcome=INTERRUPTED, interrupted=1)
    again = StateFile(tmp_path / "sub" / "daemon.json").load()
    assert again.pid == 42 and again.started_at == T0
    target = again.targets["x.com"]
    assert target.next_run == T0 + dt.timedelta(minutes=15)
    assert target.last_outcome == INTERRUPTED and target.interrupted == 1
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["daemon.json"]


def test_unfinished() -> None:
    assert not TargetState().unfinished
    assert TargetState(last_started=T0).unfinished
    assert not TargetState(last_started=T0, last_finished=T0).unfinished
    assert TargetState(last_started=T0, last_finished=T0 - dt.timedelta(seconds=1)).unfinished


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"targets": {"a": {"runs": 1, "next_run": "soon"}}}',
        # valid JSON of the wrong shape (a hand edit, another program): refused whole
        "[]",
        '{"targets": [["a", {}]]}',
        '{"targets": {"a": []}}',
        '{"pid": "x"}',
        '{"started_at": 5}',
        '{"targets": {"a": {"runs": "1"}}}',
        '{"targets": {"a": {"runs": null}}}',
        '{"targets": {"a": {"last_error": true}}}',
    ],
)
def test_unreadable_state_is_logged_and_ignored(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        state = StateFile(path).load()
    assert state == DaemonState()
    assert "ignoring unreadable daemon state" in caplog.text
