"""``probe check`` as a user meets it: bad input ends in one line and exit 2.

Every invocation here fails validation before any packet is sent (a
resolver is always given, so the system resolver is never consulted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SAFE = ["--resolver", "127.0.0.1:9", "--control-resolver", "127.0.0.1:9", "--no-store"]


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "a..b", *SAFE], "invalid domain 'a..b': empty label"),
        (["check", "x" * 300 + ".com", *SAFE], "longer than 253"),
        (["check", "ftp://x.com/", *SAFE], "only http:// and https://"),
        (["check", "x.com", "--resolver", "not-an-ip", "--no-store"], "invalid resolver"),
        (["check", "x.com", *SAFE, "--timeout", "0"], "invalid --timeout"),
        (["check", "x.com", *SAFE, "--ca-bundle", "/nonexistent.pem"], "cannot read CA bundle"),
        (["check", "--list", "/nonexistent.csv", *SAFE], "cannot read test list"),
        (["check", "--platform", "nope", *SAFE], "unknown platform 'nope'"),
        (["check", "x.com", *SAFE, "--control-sni", "bad..name"], "invalid domain"),
        (["check", "x.com", *SAFE, "--timeout", "abc"], "Invalid value for '--timeout'"),
        (["check", "x.com", "--bogus-option"], "No such option"),
        (["check", "--resolver", "127.0.0.1:9", "--no-store"], "nothing to check"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = probe(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("probe: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_vantage_name_with_a_line_break_is_refused_before_measuring(tmp_path: Path) -> None:
    db = tmp_path / "probe.db"
    result = probe("check", "x.com", *SAFE[:4], "--vantage", "lahore\nptcl", "--db", str(db))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "probe: invalid --vantage 'lahore\\nptcl': holds a line break, tab or other control "
        "character\n"
    )
    assert result.stdout == "" and not db.exists()


def test_help_lists_the_check_contract() -> None:
    result = probe("check", "--help")
    assert result.returncode == 0
    for option in (
        "--platform",
        "--list",
        "--resolver",
        "--control-resolver",
        "--ca-bundle",
        "--control-domain",
        "--control-sni",
        "--timeout",
        "--json",
        "--no-store",
        "--db",
    ):
        assert option in result.stdout


def test_version() -> None:
    result = probe("--version")
    assert result.returncode == 0 and result.stdout.startswith("reachprobe ")


def test_unreadable_user_fingerprints_are_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "fp.toml"
    bad.write_text("[[blockpage]\n")
    result = subprocess.run(
        [sys.executable, "-m", "probe", "check", "x.com", *SAFE],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PROBE_BLOCKPAGES": str(bad), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("probe: ") and "Traceback" not in result.stderr


def test_check_stores_with_the_configs_vantage_and_database(tmp_path: Path) -> None:
    """A one-off check with --config is stored like the daemon's: same vantage
    (country, ASN) and database, so reports and timeline joins see it."""
    from storage import MeasurementFilter, Store
    from tests.probe.checks.dnsserver import NXDOMAIN, serve_in_thread
    from tests.schedules.daemonproc import write_config

    db = tmp_path / "probe.db"
    with serve_in_thread({"gone.test": NXDOMAIN, "control.test": NXDOMAIN}) as dns:
        config = write_config(tmp_path / "c.toml", resolver=dns.spec, domains=["gone.test"], db=db)
        result = probe(
            "check", "gone.test", "also.gone.test", "--config", str(config), "--resolver", dns.spec,
            "--control-resolver", dns.spec, "--control-domain", "control.test", "--timeout", "1",
        )  # fmt: skip
    assert result.returncode == 3, result.stderr  # the control site fails too: offline
    with Store.open(f"sqlite:///{db}") as store:
        rows = list(store.iter_rows(MeasurementFilter()))
    assert sorted((r.domain, r.verdict) for r in rows) == [
        ("also.gone.test", "offline"), ("gone.test", "offline"),
    ]  # fmt: skip
    assert (rows[0].vantage.name, rows[0].vantage.country, rows[0].vantage.asn) == (
        "test-vantage",
        "PK",
        64500,
    )


def test_unstorable_results_are_printed_then_exit_4(tmp_path: Path) -> None:
    from tests.probe.checks.dnsserver import NXDOMAIN, serve_in_thread

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with serve_in_thread({"gone.test": NXDOMAIN}) as dns:
        result = probe(
            "check", "gone.test", "--resolver", dns.spec, "--control-resolver", dns.spec,
            "--control-domain", "gone.test", "--timeout", "1", "--json",
            "--db", f"sqlite:///{blocker}/sub/probe.db",
        )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert json.loads(result.stdout)["domain"] == "gone.test"  # the measurement is not lost
    assert result.stderr.startswith("probe: results printed but 1 of 1 NOT stored")
    assert result.stderr.count("\n") == 1


def test_a_locked_database_costs_one_busy_timeout_not_one_per_domain(tmp_path: Path) -> None:
    """Three results while another writer holds the lock: one wait, not three
    (it was three 30 s attempts per domain), then all stored together, once."""
    import sqlite3

    from probe.classify import classify
    from probe.cli.check import _Sink
    from storage import Store, Vantage
    from tests.probe.builders import working

    db = tmp_path / "probe.db"
    sink = _Sink(Vantage("v"), str(db))
    assert sink.store is not None
    sink.store.close()
    sink.store = Store.open(str(db), busy_timeout=0.3)
    obs = working()
    with sqlite3.connect(db, isolation_level=None) as locker:
        locker.execute("BEGIN IMMEDIATE")
        calls: list[tuple[object, ...]] = []
        real_save = sink.store.save

        def counted(*args: Any) -> str:
            calls.append(args)
            return real_save(*args)

        sink.store.save = counted  # type: ignore[method-assign,assignment]
        for _ in range(3):
            sink.save(obs, classify(obs))
        assert len(calls) == 1 and len(sink.waiting) == 3  # one wait, not one per result
        assert sink.error is not None and "database is locked" in str(sink.error)
        assert "more than 0.3 s" in str(sink.error)
        locker.execute("ROLLBACK")
    sink.flush()
    sink.close()
    assert sink.error is None and sink.saved == 3
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM measurements").fetchone() == (3,)


@pytest.mark.parametrize("as_json", [True, False])
def test_a_list_run_ends_with_a_tally_line_on_stderr(tmp_path: Path, as_json: bool) -> None:
    """Domains, verdicts, skipped list lines and time in one last line on stderr;
    with --json, stdout stays one JSON object per domain."""
    import json
    import re

    from tests.probe.checks.dnsserver import NXDOMAIN, serve_in_thread

    listed = tmp_path / "list.csv"
    rows = ["gone.test", "https://also.gone.test/a/path", "ftp://bad.test/", "", "gone.test"]
    listed.write_text("url,category_code\n" + "".join(f"{r},NEWS\n" for r in [*rows, "a..b"]))
    with serve_in_thread({"gone.test": NXDOMAIN, "also.gone.test": NXDOMAIN}) as dns:
        result = probe(
            "check", "--list", str(listed), "--resolver", dns.spec, "--control-resolver",
            dns.spec, "--control-domain", "gone.test", "--timeout", "1", "--no-store",
            *(["--json"] if as_json else []),
        )  # fmt: skip
    assert result.returncode == 3, result.stderr  # offline
    last = result.stderr.splitlines()[-1]
    assert re.fullmatch(
        r"checked 2 domain\(s\) in \d+\.\d s: 2 offline; 2 list line\(s\) skipped", last
    ), result.stderr
    assert "list.csv:4: skipped" in result.stderr and "list.csv:7: skipped" in result.stderr
    if as_json:
        assert sorted(json.loads(line)["domain"] for line in result.stdout.splitlines()) == [
            "also.gone.test", "gone.test",
        ]  # fmt: skip
    else:
        assert "checked" not in result.stdout


def into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """``probe ARGS`` writing to a pipe whose reader has already gone (what
    `| head -1` is after its line): the first line cannot be written."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "probe", *args],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)


def test_a_reader_that_goes_away_ends_the_run_in_one_line_and_keeps_what_was_stored(
    tmp_path: Path,
) -> None:
    """`probe check --json --list L | head -1`: the pipe's reader leaves after a
    line; this ended in a silent exit 1 (click's answer to EPIPE), which reads as
    "blocked". Now one line, exit 2, and the domains measured by then are in the
    database once."""
    import sqlite3

    from tests.probe.checks.dnsserver import NXDOMAIN, serve_in_thread

    listed = tmp_path / "list.csv"
    names = [f"gone{i}.test" for i in range(6)]
    listed.write_text("url,category_code\n" + "".join(f"{n},NEWS\n" for n in names))
    db = tmp_path / "probe.db"
    with serve_in_thread(dict.fromkeys(names, NXDOMAIN)) as dns:
        result = into_a_closed_pipe(
            "check", "--list", str(listed), "--resolver", dns.spec, "--control-resolver",
            dns.spec, "--control-domain", "gone0.test", "--timeout", "1", "--json",
            "--concurrency", "1", "--db", str(db),
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    created, *rest = result.stderr.splitlines()
    assert created.startswith("probe: created a new database")
    assert rest == ["probe: cannot write the output: Broken pipe"], result.stderr
    with sqlite3.connect(db) as conn:
        stored = [d for (d,) in conn.execute("SELECT domain FROM measurements")]
    assert stored and len(stored) == len(set(stored)) and set(stored) <= set(names), stored


def test_any_command_whose_reader_left_says_so_instead_of_exit_1() -> None:
    """click answers EPIPE with a silent exit 1, which `probe check` uses for
    "blocked": a script reading `probe explain | head -1` saw a false status."""
    result = into_a_closed_pipe("explain")
    assert result.returncode == 2, result.stderr
    assert result.stderr == "probe: cannot write the output: Broken pipe\n"
