"""The small things a new user meets: help with examples, plain words, profiles,
-v anywhere, refused URL paths, a vantage name that is not the host name."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from probe.glossary import TERMS


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.parametrize("args", [[], ["check"]])
def test_no_arguments_show_the_commands_and_examples(args: list[str]) -> None:
    result = probe(*args)
    assert result.returncode == 2
    assert "Examples:" in result.stdout and "probe check --platform x" in result.stdout
    assert ("Commands:" if not args else "--details") in result.stdout
    assert "Traceback" not in result.stderr


def test_explain_says_a_method_in_plain_words() -> None:
    result = probe("explain", "tls.reset", "SNI")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"tls.reset (TLS reset): {TERMS['tls.reset'].plain}",
        f"sni (SNI filtering): {TERMS['sni'].plain}",
    ]
    listing = probe("explain")
    assert listing.returncode == 0 and all(name in listing.stdout for name in TERMS)
    unknown = probe("explain", "tls.bogus")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == "probe: unknown term 'tls.bogus'; `probe explain` lists them all\n"


def test_platforms_lists_profiles_with_roles() -> None:
    result = probe("platforms")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["x", "X", "(Twitter)"]
    assert lines[1].split() == ["x.com", "core"] and lines[2].split() == ["twitter.com"]
    assert any(line.split() == ["pbs.twimg.com", "media"] for line in lines)


def test_verbose_works_after_the_subcommand() -> None:
    result = probe("explain", "sni", "-v")
    assert result.returncode == 0, result.stderr
    bad = probe("check", "https://x.com/elonmusk", "--no-store", "-v")
    assert bad.returncode == 2
    assert bad.stderr.startswith("probe: cannot measure 'https://x.com/elonmusk' as given")
    assert bad.stderr.count("\n") == 1


def test_hoisting_keeps_everything_after_a_double_dash() -> None:
    from probe.cli import _hoist_verbose

    assert _hoist_verbose(["check", "x.com", "-v"]) == ["-v", "check", "x.com"]
    assert _hoist_verbose(["check", "--", "-v"]) == ["check", "--", "-v"]
    assert _hoist_verbose(["-v", "check", "--verbose"]) == ["-v", "check"]


def test_verbose_shows_the_probe_not_every_http_request() -> None:
    from probe.cli import _root

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        _root(verbose=True, version=False)
        assert logging.getLogger("probe.check").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)
    finally:
        for name in ("probe", "storage", "schedules", "collectors"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        root.handlers[:], root.level = saved


def test_default_vantage_name_is_neutral_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe.cli.check import vantage_and_db

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    first, _ = vantage_and_db(None, None, None)
    again, _ = vantage_and_db(None, None, None)
    assert first.name == again.name and first.name.startswith("probe-")
    assert socket.gethostname() not in first.name
    assert (tmp_path / "reachprobe" / "vantage-name").read_text().strip() == first.name
    assert vantage_and_db(None, "chosen", None)[0].name == "chosen"


def test_init_names_the_vantage_neutrally_or_as_told(tmp_path: Path) -> None:
    import os
    import tomllib

    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    told = probe("init", str(tmp_path / "a.toml"), "--vantage", "lahore-1", env=env)
    assert told.returncode == 0, told.stderr
    assert tomllib.loads((tmp_path / "a.toml").read_text())["vantage"]["name"] == "lahore-1"
    quiet = probe("init", str(tmp_path / "b.toml"), env=env)  # not a terminal: no question
    assert quiet.returncode == 0, quiet.stderr
    name = tomllib.loads((tmp_path / "b.toml").read_text())["vantage"]["name"]
    assert name.startswith("probe-") and socket.gethostname() not in name
    bad = probe("init", str(tmp_path / "c.toml"), "--vantage", 'a"b', env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("probe: invalid vantage name")
    broken = probe("init", str(tmp_path / "d.toml"), "--vantage", "a\nb", env=env)
    assert broken.returncode == 2 and "line break" in broken.stderr
    assert not (tmp_path / "c.toml").exists() and not (tmp_path / "d.toml").exists()
