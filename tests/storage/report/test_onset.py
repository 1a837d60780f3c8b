from __future__ import annotations

import datetime as dt

import pytest

from storage.report.onset import OnsetRule, detect_episodes, nearest
from tests.storage.report.history import TRUTHS, history

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def series(pattern: str, step: dt.timedelta = HOUR) -> list[tuple[dt.datetime, bool]]:
    return [(T0 + i * step, c == "B") for i, c in enumerate(pattern)]


RULE = OnsetRule(window=4 * HOUR, min_checks=4, onset_share=0.6, end_share=0.8)


def test_isolated_failures_are_not_an_onset() -> None:
    assert detect_episodes(series("aaaBaaaaBaaaaaaBaaaa"), RULE) == ()


def test_sustained_run_with_intermittent_access_is_one_episode() -> None:
    pattern = "aaaaa" + "BBaBBBaBBBBaBB" + "aaaaaaaa"
    [episode] = detect_episodes(series(pattern), RULE)
    assert episode.onset == T0 + 5 * HOUR
    assert episode.end == T0 + 19 * HOUR
    assert (episode.checks, episode.blocked) == (14, 11)


def test_block_lasting_to_the_end_has_no_end_and_short_tail_is_undecided() -> None:
    [episode] = detect_episodes(series("aaaaBBBBBBBB"), RULE)
    assert episode.end is None and episode.onset == T0 + 4 * HOUR
    assert detect_episodes(series("aaaaaaaaBBB"), RULE) == ()  # fewer than min_checks left


def test_two_episodes() -> None:
    episodes = detect_episodes(series("aaaaBBBBBBaaaaaaaaBBBBBBaaaaaa"), RULE)
    assert [(e.onset, e.end) for e in episodes] == [
        (T0 + 4 * HOUR, T0 + 10 * HOUR),
        (T0 + 18 * HOUR, T0 + 24 * HOUR),
    ]


def test_input_order_does_not_matter_and_rule_is_validated() -> None:
    points = series("aaaaBBBBBBBB")
    assert detect_episodes(reversed(points), RULE) == detect_episodes(points, RULE)
    with pytest.raises(ValueError):
        OnsetRule(min_checks=0)
    with pytest.raises(ValueError):
        OnsetRule(end_share=1.5)


def test_nearest() -> None:
    a, b = T0, T0 + 10 * HOUR
    assert nearest(T0 + 5 * HOUR, [b, a]) == a  # tie: the earlier
    assert nearest(T0 + 6 * HOUR, [a, b]) == b
    assert nearest(T0, []) is None


def test_generated_history_onsets_and_ends() -> None:
    """Different onset per network, intermittent access, one early unblocking."""
    rows = history()
    for truth in TRUTHS:
        points = [
            (r.started_at, r.verdict == "blocked")
            for r in rows
            if r.vantage == truth.vantage and r.verdict in ("blocked", "accessible")
        ]
        [episode] = detect_episodes(points)
        assert abs(episode.onset - truth.onset) <= dt.timedelta(hours=2), truth.vantage.name
        if truth.end is None:
            assert episode.end is None
        else:
            assert episode.end is not None
            assert abs(episode.end - truth.end) <= dt.timedelta(hours=2)
