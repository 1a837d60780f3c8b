"""``probe check --list`` under a small descriptor limit: it adapts, loses nothing.

Under ``ulimit -n 256`` a list run at ``--concurrency 64`` used to die with
EMFILE (exit 70, nothing printed).  Here a list of generated names, every
one served by the lab's catch-all site, runs under ``prlimit --nofile=256``:
the probe must say once that it lowered its concurrency, measure every
domain and print each exactly once.  A limit too small for even one check
is refused up front, in one line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import missing_prerequisite, require
from tests.lab.scenarios import Expect
from tests.lab.test_scenarios import assert_result, run_probe
from tests.lab.topology import Lab, running_lab

DOMAINS = tuple(f"site{i:04d}.fd.test" for i in range(150))
LIMIT = 256


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fdlist") / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["url", "category_code", "category_description", "date_added", "source", "notes"]
        )
        writer.writerows([f"https://{d}/", "GRP", "Test", "2024-01-01", "t", ""] for d in DOMAINS)
    path.parent.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def fd_lab() -> Iterator[Lab]:
    require(missing_prerequisite())
    with running_lab("fd", catch_all=DOMAINS) as lab:
        yield lab


def test_list_run_adapts_to_the_descriptor_limit_and_loses_nothing(
    fd_lab: Lab, listed: Path
) -> None:
    options = ["--list", str(listed), "--concurrency", "64"]
    run = run_probe(
        fd_lab, (), extra=options, prefix=("prlimit", f"--nofile={LIMIT}:{LIMIT}", "--")
    )
    context = f"--list of {len(DOMAINS)} under ulimit -n {LIMIT}\n{run.context()}"
    assert run.status == 0, context
    assert sorted(run.results) == sorted(DOMAINS), context  # each printed exactly once
    for result in run.results.values():
        assert_result(result, Expect("accessible"), context)
    warnings = [line for line in run.stderr.splitlines() if "file descriptors" in line]
    assert len(warnings) == 1 and "concurrency 64 lowered to" in warnings[0], context
    assert "Traceback" not in run.stderr and "EMFILE" not in run.stderr, context


def test_a_limit_too_small_for_one_check_is_refused_in_one_line(fd_lab: Lab, listed: Path) -> None:
    options = ["--list", str(listed), "--concurrency", "64"]
    run = run_probe(fd_lab, (), extra=options, prefix=("prlimit", "--nofile=40:40", "--"))
    assert run.status == 2, run.context()
    assert run.stdout == "" and run.stderr.count("\n") == 1, run.context()
    assert run.stderr.startswith("probe: only 40 file descriptors allowed"), run.context()
