"""What a person reads: ``probe check`` without ``--json`` in every lab scenario.

Each scenario's output is compared with a reviewed snapshot in
``tests/lab/snapshots/SCENARIO.txt``, after the parts that change from run
to run (time, lab addresses, milliseconds, rates, the database path) are
replaced by placeholders and the domains (printed as they finish) are put in
a fixed order.  To accept a changed output, run with
``REACHPROBE_UPDATE_SNAPSHOTS=1`` and READ the new files before committing.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.lab.scenarios import SCENARIOS, applied
from tests.lab.topology import Lab

SNAPSHOTS = Path(__file__).parent / "snapshots"
TIMEOUT = 4.0
MAX_LINES_X = 40  # the 7 X endpoints, by default (issue #14)

_VOLATILE = (
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"), "<date>"),
    (re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b"), "<address>"),
    (re.compile(r"\b\d+(\.\d+)? (ms|s)\b"), r"<n> \2"),
    (re.compile(r"\b\d+ kbit/s"), "<n> kbit/s"),
    (re.compile(r"#[A-Za-z0-9_-]{8,}"), "#<id>"),  # the lab CA's random serial name
)


def human_run(
    lab: Lab, domains: tuple[str, ...], platform: str | None, db: Path
) -> tuple[int, str]:
    argv = [a for a in lab.probe_argv(domains, platform=platform, timeout=TIMEOUT)]
    argv.remove("--json")
    argv.remove("--no-store")
    argv += ["--db", str(db), "--vantage", "lab-vantage"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 60, check=False)
    return proc.returncode, proc.stdout


def normalise(text: str, db: Path) -> str:
    """Placeholders for what varies; per-domain blocks sorted by domain."""
    text = text.replace(str(db), "<db>")
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    head, _, rest = text.partition("\n\n")
    body, _, tail = rest.partition("\n\n")
    blocks: list[list[str]] = []
    for line in body.splitlines():
        if line.startswith(" ") and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    ordered = "\n".join("\n".join(b) for b in sorted(blocks))
    return f"{head}\n\n{ordered}\n\n{tail}"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_human_output_matches_the_reviewed_snapshot(
    clean_lab: Lab, name: str, tmp_path: Path
) -> None:
    db = tmp_path / "probe.db"
    with applied(clean_lab, name) as scenario:
        status, out = human_run(clean_lab, scenario.domains, scenario.platform, db)
    assert status == scenario.exit_status, out
    if scenario.platform == "x":
        assert len(out.splitlines()) <= MAX_LINES_X, out
    got = normalise(out, db)
    snapshot = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("REACHPROBE_UPDATE_SNAPSHOTS"):
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(got)
    assert snapshot.is_file(), f"no snapshot {snapshot}; output was:\n{out}"
    assert got == snapshot.read_text(), f"output of {name} changed:\n{out}"
