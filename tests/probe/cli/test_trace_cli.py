"""``probe trace`` as a user meets it: bad input and missing privileges end in one line.

Every invocation fails before any packet is sent (resolvers are given as
loopback, and the privilege check comes before any probe).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAFE = ["--resolver", "127.0.0.1:9"]


def probe(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=60
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trace", "a..b", *SAFE], "invalid domain"),
        (["trace", "x.com", *SAFE, "--max-ttl", "0"], "--max-ttl 0"),
        (["trace", "x.com", *SAFE, "--max-ttl", "65"], "--max-ttl 65"),
        (["trace", "x.com", *SAFE, "--wait", "0"], "--wait"),
        (["trace", "x.com", "--resolver", "nope"], "invalid resolver"),
        (["trace", "x.com", "--resolver", "https://dns.example/dns-query"], "plain IPv4 DNS"),
        (["trace", "x.com", "--resolver", "::1"], "plain IPv4 DNS"),
        (["trace", "x.com", *SAFE, "--ca-bundle", "/nonexistent.pem"], "cannot read"),
        (["trace", "x.com", *SAFE, "--control-sni", "bad..name"], "invalid domain"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = probe(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in one_line(proc)


def test_without_raw_sockets_one_line_and_exit_77() -> None:
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_RAW as root")
        prefix = (setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--")
        # root keeps its other capabilities; only CAP_NET_RAW goes
    proc = probe("trace", "x.com", *SAFE, prefix=prefix)
    assert proc.returncode == 77, proc.stderr
    assert "needs raw sockets" in one_line(proc)


def test_listing_no_traces_says_so_and_a_mistyped_db_creates_nothing(tmp_path: Path) -> None:
    """`probe traces` on an empty database printed nothing at all; on a
    mistyped --db it made an empty database there."""
    typo = tmp_path / "typo.db"
    missing = probe("traces", "--db", str(typo))
    assert missing.returncode == 4 and "no database at" in one_line(missing)
    assert not typo.exists()
    db = tmp_path / "probe.db"
    assert probe("db", "upgrade", "--db", str(db)).returncode == 0
    empty = probe("traces", "--db", str(db))
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "no traces stored\n")
    of = probe("traces", "--db", str(db), "--domain", "x.com")
    assert (of.returncode, of.stderr) == (0, "no traces stored of x.com\n")
    exported = probe("traces", "--db", str(db), "--jsonl")
    assert (exported.returncode, exported.stdout, exported.stderr) == (0, "", "")


def test_a_trace_of_a_name_with_no_address_is_listed_as_not_traced(tmp_path: Path) -> None:
    """`probe trace` said 'not traced' (the resolver gave no address), and `probe
    traces` then listed that stored trace as 'no interference'."""
    from probe.cli.trace import summary
    from probe.trace.locate import locate
    from probe.trace.observations import Probe, TraceObservation
    from storage import Store
    from storage.records import Vantage
    from storage.traces import save_trace
    from tests.probe.trace.test_locate import SERVER, observation

    traced = observation(Probe(64, "reply", SERVER), None)
    untraced = TraceObservation(
        **{**traced.__dict__, "domain": "gone.test", "address": None, "port": None, "path": ()}
    )
    db = tmp_path / "probe.db"
    with Store.open(f"sqlite:///{db}") as store:
        for obs in (traced, untraced):
            save_trace(store, obs, summary(locate(obs)), Vantage("here"))
    listed = probe("traces", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[3]: line for line in listed.stdout.splitlines()}
    assert "  not traced  " in lines["gone.test"], listed.stdout
    assert "  no interference  " in lines["x.com"], listed.stdout
