"""Two vantages behind different ISPs upload to one collector over the lab's network.

The first vantage sits behind the censoring ISP (scenario ``tcp_reset``), the
second behind an ISP that does not censor (tests.lab.multivantage).  Both run
``probe check`` and ``probe upload`` inside their namespaces; the collector
(``probe collector serve`` under uvicorn, on PostgreSQL) listens on an address
of the lab's internet.  The report over the collector names the ISP that
blocks and the one that does not.  Then the censor cuts the path to the
collector in the middle of an upload (iptables DROP), and the upload resumes
once the path is back: every measurement once.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.records import Vantage
from storage.registry import Registry
from storage.store import Store
from tests.collectors import helpers as H
from tests.collectors.collectorproc import CollectorProcess, probe, spawn
from tests.collectors.test_upload import assert_consistent, count, ids
from tests.lab.multivantage import COLLECTOR_PORT, SecondVantage, attached
from tests.lab.scenarios import applied
from tests.lab.topology import Lab
from tests.storage.conftest import pg_server, pg_url

pytestmark = [pytest.mark.lab, pytest.mark.postgres]
__all__ = ["pg_server", "pg_url"]

CENSORED = Vantage("lab-censored", "PK", 64501, "CensorNet")
OPEN = Vantage("lab-open", "PK", 64502, "OpenNet")


@pytest.fixture
def second(clean_lab: Lab) -> Iterator[SecondVantage]:
    with attached(clean_lab) as attached_second:
        yield attached_second


@pytest.fixture
def collector(
    second: SecondVantage, pg_url: str, tmp_path: Path
) -> Iterator[tuple[CollectorProcess, dict[str, str]]]:
    with Store.open(pg_url) as store:
        registry = Registry(store.database)
        tokens = {v.name: registry.add(v)[1] for v in (CENSORED, OPEN)}
    proc = CollectorProcess(
        pg_url,
        tmp_path / "collector.log",
        listen=f"{second.collector}:{COLLECTOR_PORT}",
        prefix=("ip", "netns", "exec", second.lab.internet),
    ).start()
    try:
        yield proc, tokens
    finally:
        proc.stop()
        for token in tokens.values():
            assert token[5:] not in proc.output(), "the collector logged a token"


def in_ns(ns: str) -> tuple[str, ...]:
    return ("ip", "netns", "exec", ns)


def test_two_isps_one_collector_the_report_names_the_blocking_isp(
    second: SecondVantage,
    collector: tuple[CollectorProcess, dict[str, str]],
    pg_url: str,
    tmp_path: Path,
) -> None:
    lab = second.lab
    proc, tokens = collector
    dbs = {CENSORED.name: tmp_path / "censored.db", OPEN.name: tmp_path / "open.db"}
    namespaces = {CENSORED.name: lab.vantage, OPEN.name: second.vantage}
    with applied(lab, "tcp_reset"):
        for _ in range(2):
            for name, ns in namespaces.items():
                argv = second.check_argv(ns, ["x.com"], f"sqlite:///{dbs[name]}", name)
                done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
                assert done.returncode == (1 if name == CENSORED.name else 0), done.stdout
    for name, ns in namespaces.items():
        sent = probe(
            "upload", "--collector", proc.url, "--token", tokens[name],
            "--db", f"sqlite:///{dbs[name]}", prefix=in_ns(ns),
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert f"uploaded 2 measurement(s) of vantage {name}: 2 new" in sent.stdout
    held = ids(pg_url)
    assert len(held) == len(set(held)) == 4
    local = [ids(f"sqlite:///{db}") for db in dbs.values()]
    assert sorted(local[0] + local[1]) == held
    for db in dbs.values():
        assert ids(f"sqlite:///{db}", "uploads", "measurement_id") == ids(f"sqlite:///{db}")
    report = probe("report", "--db", pg_url)
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    blocking = next(line for line in lines if line.startswith("AS64501 CensorNet  x.com"))
    fine = next(line for line in lines if line.startswith("AS64502 OpenNet    x.com"))
    assert " 100% " in blocking and "tcp.refused" in blocking
    assert " 0% " in fine
    assert any("lab-censored (PK, AS64501, CensorNet)" in line and "|B|" in line for line in lines)
    assert any("lab-open (PK, AS64502, OpenNet)" in line and "|A|" in line for line in lines)


def test_the_censor_cuts_the_collector_off_mid_upload(
    second: SecondVantage,
    collector: tuple[CollectorProcess, dict[str, str]],
    pg_url: str,
    tmp_path: Path,
) -> None:
    lab = second.lab
    proc, tokens = collector
    n = 400
    url = f"sqlite:///{tmp_path / 'censored.db'}"
    with Store.open(url) as store:
        store.import_measurements(H.batch(n, CENSORED))
    args = ("upload", "--collector", proc.url, "--token", tokens[CENSORED.name], "--db", url,
            "--batch", "10", "--timeout", "3")  # fmt: skip
    running = spawn(*args, prefix=in_ns(lab.vantage))
    deadline = time.monotonic() + 60
    while count(pg_url) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The censor starts dropping everything to and from the collector (both directions,
    # so answers in flight are lost too).
    for direction in ("-d", "-s"):
        lab.isp_rule("filter", "RP-FWD", direction, second.collector, "-j", "DROP")
    _, err = running.communicate(timeout=60)
    assert running.returncode == 5 and "cannot reach collector" in err, err
    stored = count(pg_url)
    assert 50 <= stored < n
    assert count(url, "uploads") <= stored
    lab.flush_rules()  # the path is back
    done = probe(*args, prefix=in_ns(lab.vantage))
    assert done.returncode == 0, done.stderr
    assert_consistent(url, pg_url, n)
