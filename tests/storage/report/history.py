"""A generated multi-month measurement history with a known ground truth.

Four vantages on three networks check x.com every two hours from 2024-01-01
to 2024-05-31.  Blocking starts on a different day per network, access is
intermittent while blocked, a few checks are spuriously blocked or
inconclusive before the block, and one network is unblocked early.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from storage.records import MeasurementRow, Vantage

UTC = dt.UTC
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
STOP = dt.datetime(2024, 6, 1, tzinfo=UTC)
STEP = dt.timedelta(hours=2)


@dataclass(frozen=True)
class Truth:
    vantage: Vantage
    onset: dt.datetime
    end: dt.datetime | None
    method: str
    access_while_blocked: float  # share of checks that get through during the block


TRUTHS = (
    Truth(
        Vantage("pk-ptcl-1", "PK", 17557, "PTCL"),
        dt.datetime(2024, 2, 17, 18, tzinfo=UTC),
        None,
        "tls.reset",
        0.10,
    ),
    Truth(
        Vantage("pk-ptcl-2", "PK", 17557, "PTCL"),
        dt.datetime(2024, 2, 17, 18, tzinfo=UTC),
        None,
        "tls.reset",
        0.15,
    ),
    Truth(
        Vantage("pk-jazz", "PK", 45669, "Jazz"),
        dt.datetime(2024, 2, 19, 6, tzinfo=UTC),
        dt.datetime(2024, 4, 25, 12, tzinfo=UTC),
        "dns.nxdomain",
        0.25,
    ),
    Truth(
        Vantage("pk-nayatel", "PK", 23674, "Nayatel"),
        dt.datetime(2024, 2, 22, 0, tzinfo=UTC),
        None,
        "tcp.timeout",
        0.30,
    ),
)


def truly_blocked(t: Truth, at: dt.datetime) -> bool:
    return at >= t.onset and (t.end is None or at < t.end)


def history(seed: int = 1, step: dt.timedelta = STEP) -> list[MeasurementRow]:
    rng = random.Random(seed)
    rows: list[MeasurementRow] = []
    for t in TRUTHS:
        at = START
        n = 0
        while at < STOP:
            n += 1
            blocked = truly_blocked(t, at)
            first_after_onset = t.onset <= at < t.onset + step
            first_after_end = t.end is not None and t.end <= at < t.end + step
            quiet = t.onset - dt.timedelta(days=2) <= at < t.onset  # no noise just before
            if blocked:
                verdict = "accessible" if rng.random() < t.access_while_blocked else "blocked"
                if first_after_onset:
                    verdict = "blocked"
            else:
                r = rng.random()
                verdict = "accessible"
                if not quiet and not first_after_end and r < 0.02:
                    verdict = "blocked"  # a spurious failure
                elif r > 0.97:
                    verdict = "inconclusive"
            methods = (t.method,) if verdict == "blocked" and blocked else ()
            if verdict == "blocked" and not blocked:
                methods = ("tcp.reset",)
            rows.append(
                MeasurementRow(
                    id=f"{t.vantage.name}-{n}",
                    vantage=t.vantage,
                    domain="x.com",
                    input="x.com",
                    platform="x",
                    started_at=at,
                    duration_ms=900.0,
                    verdict=verdict,
                    blocking=methods,
                    trigger=None,
                    resolver="system",
                    probe_version="test",
                    classifier_version="1",
                )
            )
            at += step
    return rows
