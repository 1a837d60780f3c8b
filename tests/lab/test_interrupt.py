"""Ctrl-C in `probe check --platform x` / `--list`: every domain that finished
before the interrupt is printed and stored, in the default output and with
--json to a file; nothing is stored twice or half."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.scenarios import SCENARIOS
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab

TIMEOUT = 20  # x.com is black-holed: it runs until this deadline
INTERRUPT_AT = 12  # s after the start: the six others finished (about 6 s), x.com has not


def _interrupted(
    lab: Lab, db: Path, out: Path, extra: list[str], after: float, platform: str | None = "x"
) -> tuple[int, str]:
    argv = lab.probe_argv((), platform=platform, timeout=TIMEOUT)
    argv = [a for a in argv if a not in ("--no-store", "--json")] + ["--db", str(db), *extra]
    with open(out, "w") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.PIPE, text=True)
        time.sleep(after)
        proc.send_signal(signal.SIGINT)  # as Ctrl-C does (to the process)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert err.strip().endswith("probe: interrupted"), err
    return proc.returncode, err


def _stored(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [str(d) for (d,) in conn.execute("SELECT domain FROM measurements")]


@pytest.mark.parametrize("as_json", [True, False])
def test_ctrl_c_keeps_every_finished_domain(clean_lab: Lab, tmp_path: Path, as_json: bool) -> None:
    SCENARIOS["tcp_blackhole"].apply(clean_lab)  # x.com hangs; the six others finish fast
    db = tmp_path / "probe.db"
    out = tmp_path / "out.txt"
    code, _ = _interrupted(clean_lab, db, out, ["--json"] if as_json else [], after=INTERRUPT_AT)
    assert code == 130
    text = out.read_text()
    if as_json:
        printed = [json.loads(line)["domain"] for line in text.splitlines() if line.strip()]
    else:
        verdicts = {"ACCESSIBLE", "BLOCKED", "DOWN", "OFFLINE", "INCONCLUSIVE"}
        rows = [line.split() for line in text.splitlines() if line and not line[0].isspace()]
        printed = [r[0] for r in rows if len(r) > 1 and r[1] in verdicts]
    stored = _stored(db)
    assert "x.com" not in printed and "x.com" not in stored
    assert len(printed) == 6, text
    assert sorted(stored) == sorted(printed)  # each finished domain stored once


def test_ctrl_c_at_random_moments_of_a_list_run(clean_lab: Lab, tmp_path: Path) -> None:
    """Whatever the moment: what was printed is what was stored, each once."""
    domains = ["x.com", "twitter.com", "api.x.com", "t.co", "abs.twimg.com", "pbs.twimg.com"]
    test_list = tmp_path / "list.csv"
    test_list.write_text("url,category_code\n" + "".join(f"https://{d}/,COMM\n" for d in domains))
    SCENARIOS["tcp_blackhole"].apply(clean_lab)
    rng = random.Random(7)
    for attempt in range(3):
        db = tmp_path / f"probe-{attempt}.db"
        out = tmp_path / f"out-{attempt}.jsonl"
        extra = ["--json", "--list", str(test_list)]
        code, err = _interrupted(clean_lab, db, out, extra, rng.uniform(1, 10), platform=None)
        assert code == 130
        printed = [json.loads(line)["domain"] for line in out.read_text().splitlines()]
        tally = err.strip().splitlines()[-2]  # then "probe: interrupted"
        assert tally.startswith(f"checked {len(printed)} of 6 domain(s) in "), err
        assert "(interrupted)" in tally, err
        stored = _stored(db)
        assert sorted(printed) == sorted(stored) and len(set(stored)) == len(stored)
