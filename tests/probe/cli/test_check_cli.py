"""``probe check`` as a user meets it: bad input ends in one line and exit 2.

Every invocation here fails validation before any packet is sent (a
resolver is always given, so the system resolver is never consulted).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
