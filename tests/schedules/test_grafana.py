"""deploy/grafana/reachprobe.json: its queries name only metrics and labels the daemon exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.schedules.test_metrics import filled

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "reachprobe.json"
_GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(PromQL, legend or title format) of every panel target and annotation."""
    found = [
        (t["expr"], t.get("legendFormat", ""))
        for panel in dashboard["panels"]
        for t in panel.get("targets", [])
    ]
    for a in dashboard["annotations"]["list"]:
        if "expr" in a:
            found.append((a["expr"], a.get("titleFormat", "") + a.get("textFormat", "")))
    return found


def parse(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression uses."""
    labels = {m for group in re.findall(_GROUPING, expr) for m in re.findall(r"\w+", group)}
    labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    rest = re.sub(_GROUPING, " ", expr)
    rest = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", rest)
    rest = re.sub(r"\b\w+\s*\(", "(", rest)  # function calls
    names = set(re.findall(r"\b[A-Za-z_:][\w:]*\b", rest))
    return names, labels


def test_every_query_names_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    samples = filled()
    exported: dict[str, set[str]] = {}
    for name, pairs in samples:
        exported.setdefault(name, set()).update(label for label, _ in pairs)
    found = queries(dashboard)
    assert len(found) >= 10
    used: set[str] = set()
    for expr, legend in found:
        names, labels = parse(expr)
        assert names, expr
        assert names <= set(exported), f"{expr}: {names - set(exported)} not exported"
        # Prometheus adds instance and job to every series it scrapes.
        available = set().union({"instance", "job"}, *(exported[n] for n in names))
        assert labels <= available, f"{expr}: labels {labels - available}"
        placeholders = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert placeholders <= available, f"{expr}: legend {placeholders - available}"
        used |= names
    for variable in dashboard["templating"]["list"]:
        metric, label = re.fullmatch(
            r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"]
        ).groups()  # type: ignore[union-attr]
        assert label in exported[metric]
    # The blackbox names and ours are both on the dashboard, and the events as annotations.
    assert {"probe_success", "probe_duration_seconds", "reachprobe_failure"} <= used
    annotation = next(a for a in dashboard["annotations"]["list"] if "expr" in a)
    assert annotation["useValueForTime"] is True
    assert "reachprobe_timeline_event_timestamp_seconds" in annotation["expr"]


def test_parse_sees_through_functions_matchers_and_grouping() -> None:
    names, labels = parse(
        'sum by (status) (increase(reachprobe_verdict_total{target=~"$target"}[1h]))'
    )
    assert names == {"reachprobe_verdict_total"} and labels == {"status", "target"}
    names, _ = parse("time() - reachprobe_last_check_timestamp_seconds * 1000")
    assert names == {"reachprobe_last_check_timestamp_seconds"}
