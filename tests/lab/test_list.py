"""``probe check --list`` over a real test list, every domain served by the lab.

An excerpt of the Pakistan Citizen Lab list plus the X names goes through the
real command; the lab's catch-all site makes every list domain a working
HTTPS/HTTP site (resolved by the internet resolver, certificate from the lab
CA), so each one is measured in full, and the SNI censor blocks x.com only.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.targets import read_test_list
from tests.lab.conftest import missing_prerequisite, require
from tests.lab.scenarios import Expect, applied
from tests.lab.test_scenarios import ProbeRun, assert_result, run_probe
from tests.lab.topology import Lab, running_lab

PK_LIST = Path(__file__).resolve().parents[3] / "shared" / "test-lists" / "pk.csv"
EXCERPT_ROWS = 60
X_ROWS = ("https://x.com/", "https://twitter.com/")  # the list has no X entry
SCENARIO = "sni_reset"  # blocks x.com only (exact SNI match)
CONCURRENCY = 16
WALL_BOUND_S = 60


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not PK_LIST.is_file():
        pytest.skip(f"test list not found: {PK_LIST}")
    with PK_LIST.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1 : 1 + EXCERPT_ROWS]
    extra = [[url, "GRP", "Social Networking", "2024-02-17", "reachprobe", ""] for url in X_ROWS]
    path = tmp_path_factory.mktemp("list") / "pk-excerpt.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body, *extra])
    path.parent.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def list_lab(excerpt: Path) -> Iterator[Lab]:
    """A lab of its own whose catch-all site has a certificate for the excerpt's names."""
    require(missing_prerequisite())
    with running_lab("rl", catch_all=[t.domain for t in read_test_list(str(excerpt))]) as lab:
        yield lab


def test_list_excerpt_every_domain_measured(list_lab: Lab, excerpt: Path) -> None:
    domains = [t.domain for t in read_test_list(str(excerpt))]
    assert len(domains) > EXCERPT_ROWS // 2 and "x.com" in domains
    options = ["--list", str(excerpt), "--concurrency", str(CONCURRENCY)]
    with applied(list_lab, SCENARIO) as scenario:
        run: ProbeRun = run_probe(list_lab, (), extra=options)
    context = f"--list {excerpt.name} under {SCENARIO}\n{run.context()}"
    assert run.status == 1, context
    assert sorted(run.results) == sorted(domains), context  # one line per unique domain
    for domain, result in run.results.items():
        expect = scenario.expect if domain == "x.com" else Expect("accessible")
        assert_result(result, expect, context)
    assert run.wall_s < WALL_BOUND_S, context
    tally = run.stderr.splitlines()[-1]  # the list run's closing line, stdout left to JSON
    assert re.fullmatch(
        rf"checked {len(domains)} domain\(s\) in \d+\.\d s: {len(domains) - 1} accessible, "
        r"1 blocked; 0 list line\(s\) skipped",
        tally,
    ), context
