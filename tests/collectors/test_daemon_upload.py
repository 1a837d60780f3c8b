"""``probe run`` with ``[upload]``: uploads after checks, backs off while the
collector is away, catches up when it is back, and ``probe status`` says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.registry import Registry
from storage.store import Store
from tests.collectors.collectorproc import CollectorProcess, probe
from tests.collectors.conftest import HttpsCollector
from tests.collectors.test_upload import assert_consistent, count
from tests.probe.checks.dnsserver import DNSServer, answer, serve_in_thread
from tests.schedules.daemonproc import DaemonProcess, write_config

pytestmark = pytest.mark.postgres


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    with serve_in_thread({"fast.test": answer("127.0.0.9")}) as server:
        yield server


def _uploading_config(tmp_path: Path, dns: DNSServer, pg_url: str, upload: str) -> tuple[Path, str]:
    """A daemon config checking every second, with ``upload`` as its [upload] section,
    and the token of its vantage registered at the collector's database."""
    from storage.records import Vantage

    with Store.open(pg_url) as store:
        _, token = Registry(store.database).add(Vantage("test-vantage", "PK", 64500))
    config = write_config(
        tmp_path / "c.toml", resolver=dns.spec, domains=["fast.test"], db=tmp_path / "probe.db",
        interval="1s", jitter="0.1s", metrics=False,
    )  # fmt: skip
    with open(config, "a") as handle:
        handle.write(f"[upload]\n{upload}\n")
    return config, token


def test_daemon_uploads_backs_off_and_catches_up(
    tmp_path: Path, dns: DNSServer, pg_url: str
) -> None:
    collector = CollectorProcess(pg_url, tmp_path / "collector.log").start()
    db = tmp_path / "probe.db"
    config, token = _uploading_config(tmp_path, dns, pg_url, f'url = "{collector.url}"')
    env = {"REACHPROBE_UPLOAD_TOKEN": token}
    url = f"sqlite:///{db}"
    try:
        with DaemonProcess(config, env=env) as daemon:
            daemon.wait_for(r"uploaded \d+ measurements to http", timeout=30)
            assert count(pg_url) >= 1
            collector.kill()  # the collector goes away (a censor blocking it looks the same)
            failed = daemon.wait_for(
                r"upload failed: cannot reach collector .* retrying in (\d+) s"
            )
            assert 1 <= int(failed.group(1)) <= 10  # the first backoff: 5 s + up to 5 s jitter
            status = probe("status", "--config", str(config), "--json", env=env)
            report = json.loads(status.stdout)["upload"]
            assert report["backlog"] >= 1 and report["last_success"] is not None
            assert "cannot reach collector" in report["last_error"]
            text = probe("status", "--config", str(config), env=env).stdout
            assert re.search(r"upload: \d+ measurement\(s\) not yet confirmed by http", text)
            collector.start()  # same port
            daemon.wait_for(r"uploaded \d+ measurements to http", timeout=30, count=2)
            assert daemon.terminate() == 0
            log = daemon.log
        assert "Traceback" not in log and token[5:] not in log
        # Whatever the last round left goes with one manual upload; then both sides agree.
        done = probe("upload", "--collector", collector.url, "--token", token, "--db", url)
        assert done.returncode == 0, done.stderr
        assert count(url) >= 3
        assert_consistent(url, pg_url, count(url))
    finally:
        collector.stop()
    assert token[5:] not in collector.output()


def test_status_after_a_manual_upload_no_longer_says_the_last_attempt_failed(
    tmp_path: Path, dns: DNSServer, pg_url: str
) -> None:
    """The daemon's upload failed, then `probe upload -c` by hand sent everything:
    `probe status` said 'last successful upload <the manual one>; last attempt failed:
    cannot reach collector', the failure being older than that success."""
    collector = CollectorProcess(pg_url, tmp_path / "collector.log").start()
    config, token = _uploading_config(tmp_path, dns, pg_url, f'url = "{collector.url}"')
    env = {"REACHPROBE_UPLOAD_TOKEN": token}
    try:
        with DaemonProcess(config, env=env) as daemon:
            daemon.wait_for(r"uploaded \d+ measurements to http", timeout=30)
            collector.kill()
            daemon.wait_for(r"upload failed: cannot reach collector")
            assert daemon.terminate() == 0
        before = json.loads(probe("status", "--config", str(config), "--json", env=env).stdout)
        assert "cannot reach collector" in before["upload"]["last_error"]
        collector.start()  # same port
        done = probe("upload", "-c", str(config), env=env)
        assert done.returncode == 0, done.stderr
        after = json.loads(probe("status", "--config", str(config), "--json", env=env).stdout)
        text = probe("status", "--config", str(config), env=env).stdout
    finally:
        collector.stop()
    assert after["upload"]["backlog"] == 0 and after["upload"]["last_error"] is None
    assert after["upload"]["last_success"] > before["upload"]["last_success"]
    assert "last attempt failed" not in text


def test_daemon_uploads_over_https_trusting_its_upload_ca_bundle(
    tmp_path: Path, dns: DNSServer, pg_url: str, https_collector: HttpsCollector
) -> None:
    """``[upload] ca_bundle``: a collector whose certificate is from a CA of its own."""
    served = https_collector.proc
    upload = f'url = "{served.url}"\nca_bundle = "{https_collector.ca}"'
    config, token = _uploading_config(tmp_path, dns, pg_url, upload)
    with DaemonProcess(config, env={"REACHPROBE_UPLOAD_TOKEN": token}) as daemon:
        daemon.wait_for(r"uploaded \d+ measurements to https://127\.0\.0\.1", timeout=30)
        assert daemon.terminate() == 0
        log = daemon.log
    assert "Traceback" not in log and "certificate verify failed" not in log
    assert count(pg_url) >= 1


def test_the_daemons_upload_path_imports_no_web_stack() -> None:
    code = (
        "import sys, schedules.daemon, schedules.upload, collectors.upload, storage.outbox;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not {"starlette", "uvicorn", "anyio"}.intersection(out)
