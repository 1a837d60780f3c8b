"""The human table and the probe.check/1 JSON built from one measurement."""

from __future__ import annotations

import json

from probe.classify import classify
from probe.render import SCHEMA, check_json, check_table
from tests.probe.builders import working


def test_table_in_colour_and_plain() -> None:
    obs = working()
    verdict = classify(obs)
    plain = check_table(obs, verdict, colour=False)
    coloured = check_table(obs, verdict, colour=True)
    assert plain.splitlines()[0].startswith(f"{obs.domain}  ACCESSIBLE")
    assert "\x1b[" in coloured and "\x1b[" not in plain
    assert "tls control-sni" in plain or "tls " in plain


def test_json_has_the_documented_top_level_keys() -> None:
    obs = working()
    line = json.dumps(check_json(obs, classify(obs)))
    data = json.loads(line)
    assert data["schema"] == SCHEMA == "probe.check/1"
    for key in (
        "domain",
        "verdict",
        "blocking",
        "trigger",
        "started_at",
        "duration_ms",
        "dns",
        "endpoints",
        "http",
        "control",
    ):
        assert key in data
    assert set(data["dns"]) == {"vantage", "control"}
    assert all("ok" in e["tcp"] for e in data["endpoints"] if e["tcp"])
    assert all("body" not in e["http"] for e in data["endpoints"] if e["http"])  # kept in storage
