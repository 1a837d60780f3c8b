"""``probe check --list`` under a small descriptor limit: it adapts, loses nothing.

Under ``ulimit -n 256`` a list run at ``--concurrency 64`` of 2,000 domains
used to die with EMFILE (exit 70, nothing printed).  Here a list of 300
generated names runs under ``prlimit --nofile=256``: 150 are served by the
lab's catch-all site (each a full check holding its sockets), the other 150
do not exist (NXDOMAIN from both resolvers).  The 2,000-domain run itself
takes about two minutes at the concurrency that fits (5): it is
``benchmarks/bench_fdlimit.py``, which runs this test's list with 1,850
such names.  The probe must say once that it lowered its concurrency, measure
every domain, and print and store each exactly once.  A limit too small for
even one check is refused up front, in one line.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import missing_prerequisite, require
from tests.lab.scenarios import Expect
from tests.lab.test_scenarios import assert_result, run_probe
from tests.lab.topology import Lab, running_lab

SERVED = tuple(f"site{i:04d}.fd.test" for i in range(150))
GONE_ZONE = "nx.fd.test"  # NXDOMAIN from the internet resolver, catch-all or not
GONE = tuple(f"gone{i:04d}.{GONE_ZONE}" for i in range(150))
DOMAINS = SERVED + GONE
LIMIT = 256


def write_list(path: Path, domains: tuple[str, ...]) -> Path:
    """A Citizen Lab style test list of ``domains``, readable by the probe."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["url", "category_code", "category_description", "date_added", "source", "notes"]
        )
        writer.writerows([f"https://{d}/", "GRP", "Test", "2024-01-01", "t", ""] for d in domains)
    path.parent.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_list(tmp_path_factory.mktemp("fdlist") / "list.csv", DOMAINS)


@pytest.fixture(scope="module")
def fd_lab() -> Iterator[Lab]:
    require(missing_prerequisite())
    with running_lab("fd", catch_all=SERVED) as lab:
        lab.start_internet_resolver([f"--address=/{GONE_ZONE}/"])  # no address: NXDOMAIN
        yield lab


@pytest.mark.timeout(120)
def test_list_run_adapts_to_the_descriptor_limit_and_loses_nothing(
    fd_lab: Lab, listed: Path, tmp_path: Path
) -> None:
    db = tmp_path / "probe.db"
    options = ["--list", str(listed), "--concurrency", "64", "--db", str(db)]
    run = run_probe(
        fd_lab, (), extra=options, prefix=("prlimit", f"--nofile={LIMIT}:{LIMIT}", "--"), store=True
    )
    context = f"--list of {len(DOMAINS)} under ulimit -n {LIMIT}\n{run.context()[-4000:]}"
    assert run.status == 3, context  # 3: some domains down (the names that do not exist)
    assert sorted(run.results) == sorted(DOMAINS), context  # each printed exactly once
    for domain in SERVED:
        assert_result(run.results[domain], Expect("accessible"), context)
    for domain in GONE:  # the name does not exist: no site, not a block
        assert run.results[domain]["verdict"] == "down", context
    warnings = [line for line in run.stderr.splitlines() if "file descriptors" in line]
    assert len(warnings) == 1 and "concurrency 64 lowered to" in warnings[0], context
    assert "Traceback" not in run.stderr and "EMFILE" not in run.stderr, context
    with sqlite3.connect(db) as conn:
        stored = [str(d) for (d,) in conn.execute("SELECT domain FROM measurements")]
    assert sorted(stored) == sorted(DOMAINS), "not every domain stored exactly once"
    print(f"\n{len(DOMAINS)} domains under ulimit -n {LIMIT}: {run.wall_s:.1f} s, {warnings[0]}")


def test_a_limit_too_small_for_one_check_is_refused_in_one_line(fd_lab: Lab, listed: Path) -> None:
    options = ["--list", str(listed), "--concurrency", "64"]
    run = run_probe(fd_lab, (), extra=options, prefix=("prlimit", "--nofile=40:40", "--"))
    assert run.status == 2, run.context()
    assert run.stdout == "" and run.stderr.count("\n") == 1, run.context()
    assert run.stderr.startswith("probe: only 40 file descriptors allowed"), run.context()
