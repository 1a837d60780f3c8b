"""Building upload batches for collector tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest

from probe.verdict import Verdict
from storage.jsonl import encode
from storage.records import StoredMeasurement, Vantage
from storage.summary import measurement_row
from tests.storage import factories as F

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PTCL = Vantage(name="lahore-ptcl", country="PK", asn=17557, network="PTCL")
JAZZ = Vantage(name="karachi-jazz", country="PK", asn=24499, network="Jazz")


def measurement(
    vantage: Vantage = PTCL,
    *,
    blocked: bool = True,
    started_at: dt.datetime | None = None,
    domain: str = "x.com",
    measurement_id: str | None = None,
) -> StoredMeasurement:
    when = started_at or NOW - dt.timedelta(hours=1)
    obs = (
        F.blocked_sni(domain=domain, started_at=when)
        if blocked
        else F.accessible(domain=domain, started_at=when, platform="x")
    )
    verdict: Verdict = F.BLOCKED if blocked else F.ACCESSIBLE
    mid = measurement_id or str(uuid.uuid4())
    return StoredMeasurement(measurement_row(mid, vantage, obs, verdict), obs, verdict)


def batch(n: int, vantage: Vantage = PTCL, **kw: Any) -> list[StoredMeasurement]:
    start = NOW - dt.timedelta(days=2)
    return [
        measurement(vantage, started_at=start + dt.timedelta(seconds=i), **kw) for i in range(n)
    ]


def jsonl(items: list[StoredMeasurement]) -> bytes:
    return "".join(json.dumps(encode(i)) + "\n" for i in items).encode()


def record(item: StoredMeasurement | None = None) -> dict[str, Any]:
    """One encoded record as a mutable dict, to break on purpose."""
    return json.loads(json.dumps(encode(item or measurement())))  # type: ignore[no-any-return]


def line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data) + "\n").encode()


def with_vantage(item: StoredMeasurement, vantage: Vantage) -> StoredMeasurement:
    return dataclasses.replace(item, row=dataclasses.replace(item.row, vantage=vantage))


def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """``probe ARGS`` through probe.cli.main (real exit statuses), output captured."""
    import sys

    import typer

    import probe.cli
    from probe.cli import collector, data, timeline, upload

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    for module in (data, collector, upload, timeline):
        module.register(app)
    monkeypatch.setattr(probe.cli, "app", app)
    monkeypatch.setattr(probe.cli, "_register", lambda: None)
    monkeypatch.setattr(sys, "argv", ["probe", *args])
    with pytest.raises(SystemExit) as done:
        probe.cli.main()
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err
