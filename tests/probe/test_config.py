"""probe.config: the template, errors with file:line and key, environment overrides, CLI exits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from probe.config import (
    config_warnings,
    example_config,
    load_config,
    parse_config,
    parse_duration,
)
from probe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
[vantage]
name = "pi-lahore"
country = "pk"
asn = "AS17557"

[targets]
platforms = []
domains = ["a.example", "https://b.example/path"]

[schedule]
interval = "30s"
jitter = 5
"""


def test_template_is_valid_and_gives_the_documented_defaults() -> None:
    config = parse_config(example_config(), "t.toml", env={})
    assert config.vantage.name == "my-probe"
    assert config.vantage.country is None and config.vantage.asn is None
    assert config.targets.platforms == ("x",)
    assert config.schedule.interval_s == 15 * 60
    assert config.schedule.jitter_s == 60
    assert config.storage.url is None and config.storage.retention_days == 0
    assert config.metrics.address is None
    assert config.checks.resolver is None and config.checks.control_resolvers is None


def test_values_are_normalised() -> None:
    config = parse_config(MINIMAL, "c.toml", env={})
    assert config.vantage.country == "PK"
    assert config.vantage.asn == 17557
    assert config.targets.domains == ("a.example", "https://b.example/path")
    assert (config.schedule.interval_s, config.schedule.jitter_s) == (30, 5)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("90s", 90), ("1h30m", 5400), ("250ms", 0.25), (12, 12), ("2.5", 2.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "", "1h 2q", True, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.toml", env=env or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_syntax_error_names_the_line() -> None:
    text = MINIMAL + "\n[metrics]\nlisten = 127.0.0.1:9816\n"
    line = text.splitlines().index("listen = 127.0.0.1:9816") + 1
    assert _error(text).startswith(f"c.toml:{line}: syntax error: ")


def test_wrong_type_names_key_and_line() -> None:
    text = MINIMAL.replace('name = "pi-lahore"', "name = 42")
    assert _error(text) == "c.toml:2: key 'vantage.name': expected a string, got an integer"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("lahore\nptcl", "line break"), ("a\tb", "line break, tab"), ("x" * 101, "longer than 100")],
)
def test_a_vantage_name_that_would_split_rows_is_refused(name: str, reason: str) -> None:
    """The name is in every table, log line and CSV row: a line break would
    split them (`probe report` printed a vantage "a<newline>b" over two rows)."""
    text = MINIMAL.replace('"pi-lahore"', json.dumps(name))  # JSON escapes are TOML's
    assert _error(text).startswith("c.toml:2: key 'vantage.name': ")
    assert reason in _error(text)
    from_env = _error(MINIMAL, env={"REACHPROBE_VANTAGE_NAME": name})
    assert "'vantage.name'" in from_env and "REACHPROBE_VANTAGE_NAME" in from_env
    assert reason in from_env


def test_a_network_name_that_would_split_rows_is_refused() -> None:
    """The ISP's name is shown beside the vantage's, so it has the same rule."""
    text = MINIMAL.replace('asn = "AS17557"', 'asn = "AS17557"\nnetwork = "PTCL\\nKarachi"')
    assert _error(text) == (
        "c.toml:5: key 'vantage.network': holds a line break, tab or other control character"
    )
    plain = MINIMAL.replace('asn = "AS17557"', 'asn = "AS17557"\nnetwork = " PTCL "')
    assert parse_config(plain, "c.toml", env={}).vantage.network == "PTCL"


def test_bad_value_names_key_and_line() -> None:
    text = MINIMAL.replace('interval = "30s"', 'interval = "half an hour"')
    message = _error(text)
    assert message.startswith("c.toml:11: key 'schedule.interval': expected a duration")


def test_unknown_key_and_section() -> None:
    assert _error(MINIMAL + "intervall = 5\n").startswith(
        "c.toml:13: key 'schedule.intervall': unknown key"
    )
    assert _error(MINIMAL + "[sheduel]\n").startswith("c.toml:13: key 'sheduel': unknown section")


def test_semantic_errors() -> None:
    assert _error(MINIMAL.replace("jitter = 5", "jitter = 30")).startswith(
        "c.toml:12: key 'schedule.jitter': must be shorter than schedule.interval"
    )
    assert "unknown platform 'myspace'" in _error(
        MINIMAL.replace("platforms = []", 'platforms = ["myspace"]')
    )
    bad_domain = _error(MINIMAL.replace('"a.example", ', '"not a domain", '))
    assert bad_domain.startswith("c.toml:8: key 'targets.domains': invalid domain")
    no_targets = MINIMAL.replace(
        'domains = ["a.example", "https://b.example/path"]', "domains = []"
    )
    assert "no targets" in _error(no_targets)
    resolver = _error(MINIMAL + '[checks]\nresolver = "dns.google"\n')
    assert resolver.startswith("c.toml:14: key 'checks.resolver': invalid resolver")
    listen = _error(MINIMAL + '[metrics]\nlisten = "9816"\n')
    assert listen.startswith("c.toml:14: key 'metrics.listen': expected HOST:PORT")
    for guess in ("::1:9816", "[::1:9816", "[name]:9816", "[]:9816"):  # which part is the port?
        assert "expected HOST:PORT" in _error(MINIMAL + f'[metrics]\nlisten = "{guess}"\n')
    ca = _error(MINIMAL + '[upload]\nca_bundle = "/nonexistent/ca.pem"\n')
    assert ca.startswith("c.toml:14: key 'upload.ca_bundle': no such file: /nonexistent/ca.pem")
    assert "required" in _error(MINIMAL.replace('name = "pi-lahore"\n', ""))


def test_environment_overrides_the_file() -> None:
    env = {
        "REACHPROBE_SCHEDULE_INTERVAL": "2m",
        "REACHPROBE_TARGETS_DOMAINS": "c.example, d.example",
        "REACHPROBE_VANTAGE_ASN": "64500",
        "REACHPROBE_METRICS_LISTEN": "127.0.0.1:0",
        "REACHPROBE_STORAGE_URL": "sqlite:////data/probe.db",
        "UNRELATED": "x",
    }
    config = parse_config(MINIMAL, "c.toml", env=env)
    assert config.schedule.interval_s == 120
    assert config.targets.domains == ("c.example", "d.example")
    assert config.vantage.asn == 64500
    assert config.metrics.address == ("127.0.0.1", 0)
    assert config.storage.url == "sqlite:////data/probe.db"


def test_bad_environment_value_names_the_variable() -> None:
    message = _error(MINIMAL, {"REACHPROBE_CHECKS_CONCURRENCY": "many"})
    assert message == (
        "environment REACHPROBE_CHECKS_CONCURRENCY: key 'checks.concurrency': "
        "expected an integer, got 'many'"
    )
    semantic = _error(MINIMAL, {"REACHPROBE_SCHEDULE_JITTER": "1h"})
    assert semantic.startswith("environment REACHPROBE_SCHEDULE_JITTER: key 'schedule.jitter'")


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml", env={})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary, env={})


def _probe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_init_then_check_then_bad_config(tmp_path: Path) -> None:
    done = _probe("init", "conf/probe.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "conf" / "probe.toml"
    named = re.sub(r'name = "probe-[0-9a-f]+"', 'name = "my-probe"', written.read_text(), count=1)
    assert named == example_config()  # with a generated vantage name
    assert written.stat().st_mode & 0o777 == 0o600  # it may come to hold a password
    again = _probe("init", "conf/probe.toml", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr

    ok = _probe("config", "check", "--config", str(written), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "7 targets" in ok.stdout and "x.com" in ok.stdout
    one = tmp_path / "one.toml"
    one.write_text(MINIMAL.replace('["a.example", "https://b.example/path"]', '["a.example"]'))
    single = _probe("config", "check", "--config", str(one), cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert ": ok: 1 target (a.example), every 30 s" in single.stdout

    written.write_text(example_config().replace('interval = "15m"', 'interval = "soon"'))
    line = (
        written.read_text()
        .splitlines()
        .index(next(s for s in written.read_text().splitlines() if s.startswith("interval =")))
        + 1
    )
    for command in (("config", "check"), ("run",), ("status",)):
        bad = _probe(*command, "-c", str(written), cwd=tmp_path)
        assert bad.returncode == 2, (command, bad.stderr)
        assert bad.stderr.startswith(f"probe: {written}:{line}: key 'schedule.interval': ")
        assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_helpers_reach_the_check_options() -> None:
    from probe.config import check_options

    text = MINIMAL + '\n[checks]\nhelper = ["https://h1.example/", "http://h2.example:8080/"]\n'
    config = parse_config(text, "c.toml", env={})
    assert check_options(config).helpers == ("https://h1.example/", "http://h2.example:8080/")
    assert check_options(parse_config(MINIMAL, "c.toml", env={})).helpers == ()
    with pytest.raises(ConfigError, match=r"checks\.helper"):
        parse_config(MINIMAL + '\n[checks]\nhelper = ["ftp://nope/"]\n', "c.toml", env={})


def test_a_bad_storage_url_names_key_and_line() -> None:
    text = MINIMAL + '[storage]\nurl = "mysql://x"\n'
    message = _error(text)
    assert message.startswith("c.toml:14: key 'storage.url': unsupported database 'mysql'")
    assert "invalid database URL" in _error(MINIMAL + '[storage]\nurl = "garbage:::"\n')
    env = {"REACHPROBE_STORAGE_URL": "postgresql://h:notaport/db"}
    assert _error(MINIMAL, env).startswith(
        "environment REACHPROBE_STORAGE_URL: key 'storage.url': invalid database URL"
    )
    assert "busy_timeout" in _error(MINIMAL + '[storage]\nbusy_timeout = "0s"\n')


def test_warnings_for_typo_variables_and_metrics_on_every_interface() -> None:
    config = parse_config(MINIMAL + '[metrics]\nlisten = ":9816"\n', "c.toml", env={})
    env = {"REACHPROBE_SCHEDULE_INTERVALL": "5m", "PROBE_DBB": "x", "PROBE_DB": "y", "HOME": "/"}
    assert config_warnings(config, env) == [
        "environment variable PROBE_DBB is not a setting (a typo?); it is ignored",
        "environment variable REACHPROBE_SCHEDULE_INTERVALL is not a setting (a typo?); "
        "it is ignored",
        # probe check refuses this URL; the daemon measured its domain without a word
        "targets.domains: 'https://b.example/path' names a path or port; its domain "
        "b.example is checked (ports 443 and 80, the page at /)",
        "metrics.listen ':9816' serves metrics on every interface (anyone who reaches this "
        "machine can read them); 127.0.0.1:9816 keeps them local",
    ]
    local = parse_config(MINIMAL + '[metrics]\nlisten = "127.0.0.1:9816"\n', "c.toml", env={})
    local = replace(local, targets=replace(local.targets, domains=("https://b.example/",)))
    assert config_warnings(local, {"REACHPROBE_STORAGE_URL": "x.db"}) == []


def test_a_token_kept_in_the_daemons_environment_is_needed_only_by_the_daemon(
    tmp_path: Path,
) -> None:
    """The example config keeps `token = ""` and the daemon's unit sets
    REACHPROBE_UPLOAD_TOKEN: `probe status -c` and `probe check -c` in an admin's
    shell (no such variable) refused the config for a missing upload.token."""
    config = tmp_path / "c.toml"
    db = tmp_path / "probe.db"
    config.write_text(
        MINIMAL + f'\n[storage]\nurl = "{db}"\n'
        '[upload]\nurl = "https://collector.example"\ntoken = ""\n'
    )
    assert _probe("db", "upgrade", "--db", str(db), cwd=tmp_path).returncode == 0
    status = _probe("status", "-c", str(config), cwd=tmp_path)
    assert "upload.token" not in status.stderr and "Traceback" not in status.stderr
    assert "not running" in status.stdout, status.stdout + status.stderr
    check = _probe("config", "check", "-c", str(config), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert (
        f"{config}: warning: key 'upload.token': required with upload.url (in the file or as "
        "REACHPROBE_UPLOAD_TOKEN in the daemon's environment); not set here\n"
    ) in check.stderr
    daemon = _probe("run", "-c", str(config), cwd=tmp_path)  # the daemon itself refuses
    assert daemon.returncode == 2, daemon.stderr
    assert daemon.stderr == (
        f"probe: {config}: key 'upload.token': required with upload.url (in the file or as "
        "REACHPROBE_UPLOAD_TOKEN in the daemon's environment)\n"
    )


def test_status_where_the_daemon_stored_nothing_creates_nothing(tmp_path: Path) -> None:
    """`sudo probe status -c /etc/reachprobe/reachprobe.toml` without the unit's
    STATE_DIRECTORY made an empty database (and its folders) in root's home, silently,
    and showed every target 'never' measured, as if the daemon had not run."""
    config = tmp_path / "c.toml"
    config.write_text(MINIMAL)  # [storage] url = "": the default file, under $HOME
    status = _probe("status", "-c", str(config), cwd=tmp_path)
    assert status.returncode == 4, status.stdout + status.stderr
    default = tmp_path / ".local" / "share" / "reachprobe" / "probe.db"
    assert status.stderr == (
        f"probe: no database at {default}: the daemon has stored nothing there (its "
        "[storage] url says where it stores; under systemd, give STATE_DIRECTORY as its "
        "unit does)\n"
    )
    assert status.stdout == ""
    assert not (tmp_path / ".local").exists()


def test_a_token_no_collector_would_take_is_refused_by_the_config(tmp_path: Path) -> None:
    """`[upload] token` pasted with a typographic apostrophe passed `probe config check`;
    the daemon then failed every upload after every check, for good."""
    config = tmp_path / "c.toml"
    config.write_text(
        MINIMAL + '\n[upload]\nurl = "https://collector.example"\ntoken = "rpv1_abc\u2019"\n'
    )
    for command in (("config", "check"), ("run",)):
        done = _probe(*command, "-c", str(config), cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr == (
            f"probe: {config}:16: key 'upload.token': the upload token holds a line break, space "
            "or non-ASCII character, which no token has: copy it again from `probe collector "
            "vantage add`\n"
        )


def test_a_collector_url_with_a_user_name_is_refused_by_the_config(tmp_path: Path) -> None:
    """`[upload] url = "https://me@collector.example"` passed; every upload then failed."""
    config = tmp_path / "c.toml"
    config.write_text(MINIMAL + '\n[upload]\nurl = "https://me@collector.example"\n')
    done = _probe("config", "check", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"probe: {config}:15: key 'upload.url': must not hold a user name (the upload token "
        "is the credential)\n"
    )


def test_init_writes_only_a_regular_file(tmp_path: Path) -> None:
    """`probe init --force /dev/null` as root made the device 0600 and wrote the
    template into it; `probe init -` wrote a file named '-'."""
    import stat

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    done = _probe("init", "--force", str(fifo), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"probe: {fifo} exists and is not a regular file\n"
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644 and stat.S_ISFIFO(fifo.stat().st_mode)
    dash = _probe("init", "-", cwd=tmp_path)
    assert dash.returncode == 2 and dash.stderr == "probe: give the config file's path, not '-'\n"
    assert not (tmp_path / "-").exists()
