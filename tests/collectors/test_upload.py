"""``probe upload`` against ``probe collector serve`` over a real socket, with faults.

Every test counts rows on both sides afterwards: each measurement is at the
collector exactly once, and the probe marks as uploaded exactly what the
collector holds.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from collectors import protocol
from storage.registry import Registry
from storage.store import Store
from tests.collectors import helpers as H
from tests.collectors.collectorproc import CollectorProcess, probe, spawn
from tests.collectors.conftest import HttpsCollector, own_ca_certificate
from tests.storage.pgcluster import Unavailable, pg_ctl

pytestmark = pytest.mark.postgres


@pytest.fixture
def collector_db(pg_url: str) -> str:
    return pg_url


@pytest.fixture
def token(collector_db: str) -> str:
    with Store.open(collector_db) as store:
        return Registry(store.database).add(H.PTCL)[1]


@pytest.fixture
def collector(collector_db: str, tmp_path: Path, token: str) -> Iterator[CollectorProcess]:
    proc = CollectorProcess(collector_db, tmp_path / "collector.log").start()
    try:
        yield proc
    finally:
        proc.stop()
        assert token[5:] not in proc.output(), "the collector logged a token"


_TEMPLATES: dict[tuple[int, int], Path] = {}


def probe_db(tmp_path: Path, n: int, others: int = 0) -> str:
    """A probe's SQLite database with ``n`` measurements of PTCL (+ ``others`` of Jazz).

    Built once per size and copied: importing is the slow part of these tests.
    """
    template = _TEMPLATES.get((n, others))
    if template is None or not template.exists():
        template = tmp_path / f"template-{n}-{others}.db"
        with Store.open(f"sqlite:///{template}") as store:
            store.import_measurements(H.batch(n))
            store.import_measurements(H.batch(others, H.JAZZ))
        _TEMPLATES[(n, others)] = template
    path = tmp_path / "probe.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def count(url: str, table: str = "measurements") -> int:
    with Store.open(url, migrate=False) as store, store.database.reading() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def ids(url: str, table: str = "measurements", column: str = "id") -> list[str]:
    with Store.open(url, migrate=False) as store, store.database.reading() as conn:
        return sorted(str(r[0]) for r in conn.execute(text(f"SELECT {column} FROM {table}")))


def assert_consistent(probe_url: str, collector_url: str, expected: int) -> None:
    """Nothing lost, nothing twice, and the probe marked exactly what the collector has."""
    at_collector = ids(collector_url)
    assert len(at_collector) == len(set(at_collector)) == expected
    assert count(collector_url, "observations") == expected
    assert ids(probe_url, "uploads", "measurement_id") == at_collector


def upload(probe_url: str, collector: CollectorProcess, token: str, *more: str) -> Any:
    return probe("upload", "--collector", collector.url, "--token", token, "--db", probe_url, *more)


def test_probe_upload_sends_the_backlog_once(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    url = probe_db(tmp_path, 600, others=3)
    done = upload(url, collector, token, "--batch", "250")
    assert done.returncode == 0, done.stderr
    assert "uploaded 600 measurement(s) of vantage lahore-ptcl: 600 new" in done.stdout
    assert "3 of other vantages not uploaded" in done.stdout
    assert_consistent(url, collector_db, 600)
    again = upload(url, collector, token)
    assert again.returncode == 0 and "uploaded 0 measurement(s)" in again.stdout
    assert count(url) == 603  # uploading never deletes anything
    with Store.open(collector_db) as store:
        assert {r.vantage for r in store.iter_rows()} == {H.PTCL}
    assert "upload from vantage lahore-ptcl: 250 added" in collector.output()


def test_a_collector_on_an_ipv6_address_names_a_url_probe_upload_takes(
    tmp_path: Path, token: str, collector_db: str
) -> None:
    """`--listen [::1]:8500` logged 'collector listening on http://::1:8500': given to
    `probe upload --collector`, that is refused as a bad URL."""
    proc = CollectorProcess(collector_db, tmp_path / "collector.log", listen="[::1]:0").start()
    try:
        url = probe_db(tmp_path, 3)
        done = upload(url, proc, token)
    finally:
        proc.stop()
    assert done.returncode == 0, done.stderr
    assert_consistent(url, collector_db, 3)
    assert proc.url.startswith("http://[::1]:"), proc.url


@pytest.mark.parametrize(
    ("collector", "token", "said"),
    [
        # a token pasted with a typographic character: 'internal error (UnicodeEncodeError)'
        ("http://127.0.0.1:9", "rpv1_abc\u2019", "the upload token holds a line break, space"),
        # a line break inside: 'cannot reach collector: Illegal header value' (exit 5)
        ("http://127.0.0.1:9", "rpv1_a\nb", "the upload token holds a line break, space"),
        # an unclosed IPv6 bracket: 'internal error (ValueError: Invalid IPv6 URL)'
        ("http://[::1", "rpv1_abc", "collector URL must be http(s)://HOST[:PORT], not"),
        # a password in the URL was shown in every error and stored with the confirmations
        ("http://me:s3cret@127.0.0.1:9", "rpv1_abc", "collector URL must not hold a user"),
    ],
)
def test_a_malformed_token_or_url_is_one_line_and_exit_2(
    tmp_path: Path, collector: str, token: str, said: str
) -> None:
    url = probe_db(tmp_path, 1)
    done = probe("upload", "--collector", collector, "--token", token, "--db", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"probe: {said}") and done.stderr.count("\n") == 1, done.stderr
    assert token not in done.stderr and "s3cret" not in done.stderr  # secrets, even mistyped
    assert count(url, "uploads") == 0


def test_upload_failures_are_one_line_and_exit_5(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    url = probe_db(tmp_path, 3)
    wrong = upload(url, collector, "rpv1_" + "x" * 43)
    assert wrong.returncode == 5 and "refused the token (401: invalid token)" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    bad = probe("upload", "--collector", "ftp://x", "--token", token, "--db", url)
    assert bad.returncode == 2 and "http(s)://" in bad.stderr
    port = collector.url.rsplit(":", 1)[1]
    collector.stop()
    gone = probe("upload", "--collector", f"http://127.0.0.1:{port}", "--token", token, "--db", url)
    assert gone.returncode == 5 and "cannot reach collector" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
    assert count(collector_db) == 0 and count(url, "uploads") == 0


def test_a_daemon_whose_name_is_not_its_tokens_is_refused_in_one_line(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    """A probe measuring as "lahore" with lahore-ptcl's token: said, not a silent backlog."""
    from collectors.upload import Refused
    from collectors.upload import upload as send

    url = probe_db(tmp_path, 3)
    with Store.open(url) as store, pytest.raises(Refused) as refused:
        send(store, collector.url, token, vantage="lahore")
    assert "vantage 'lahore-ptcl'" in str(refused.value)
    assert "measures as 'lahore'" in str(refused.value)
    assert count(collector_db) == 0 and count(url, "uploads") == 0
    with Store.open(url) as store:  # its own name: everything goes
        assert send(store, collector.url, token, vantage=H.PTCL.name).sent == 3
    assert_consistent(url, collector_db, 3)


def test_a_rejected_batch_stops_the_upload_with_only_the_answered_batches_marked(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    """The upload reads and compresses the next batch while one is in flight: the third
    batch was read when the second was refused, and neither is marked uploaded."""
    import httpx

    url = probe_db(tmp_path, 60)
    in_order = _in_order(url)
    taken = in_order[25]  # in the second batch of 20
    with Store.open(collector_db) as store:
        other = Registry(store.database).add(H.JAZZ)[1]
    body = H.jsonl([H.measurement(H.JAZZ, measurement_id=taken)])
    headers = {"Authorization": f"Bearer {other}", "Content-Type": protocol.CONTENT_TYPE}
    answer = httpx.post(collector.url + protocol.MEASUREMENTS_PATH, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    done = upload(url, collector, token, "--batch", "20")
    assert done.returncode == 5 and "rejected the upload (409" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert ids(url, "uploads", "measurement_id") == sorted(in_order[:20])
    assert count(collector_db) == 21  # the first batch, and the other vantage's one


def _in_order(url: str) -> list[str]:
    with Store.open(url, migrate=False) as store, store.database.reading() as conn:
        order = text("SELECT id FROM measurements ORDER BY started_at, id")
        return [str(r[0]) for r in conn.execute(order)]


def wait_for_rows(url: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = count(url)
        if n >= at_least:
            return n
        time.sleep(0.01)
    raise AssertionError(f"fewer than {at_least} rows after {timeout} s")


def test_collector_killed_mid_upload_then_retried_stores_everything_once(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    n = 800
    url = probe_db(tmp_path, n)
    running = spawn("upload", "--collector", collector.url, "--token", token, "--db", url,
                    "--batch", "20")  # fmt: skip
    wait_for_rows(collector_db, 100)
    collector.kill()  # SIGKILL, mid-upload: a batch may be committed but unanswered
    _, err = running.communicate(timeout=60)
    assert running.returncode == 5, err
    stored, confirmed = count(collector_db), count(url, "uploads")
    assert 100 <= stored < n and confirmed <= stored
    collector.start()
    done = upload(url, collector, token, "--batch", "20")
    assert done.returncode == 0, done.stderr
    assert_consistent(url, collector_db, n)


def test_token_revoked_mid_run_stops_the_upload_cleanly(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    n = 800
    url = probe_db(tmp_path, n)
    running = spawn("upload", "--collector", collector.url, "--token", token, "--db", url,
                    "--batch", "20")  # fmt: skip
    wait_for_rows(collector_db, 100)
    revoked = probe("collector", "vantage", "revoke", "lahore-ptcl", "--db", collector_db)
    assert revoked.returncode == 0, revoked.stderr
    _, err = running.communicate(timeout=60)
    assert running.returncode == 5 and "revoked" in err
    stored = count(collector_db)
    assert stored < n
    assert_consistent(url, collector_db, stored)
    time.sleep(0.2)
    assert count(collector_db) == stored  # nothing accepted after the revoke


def test_two_processes_uploading_the_same_backlog_store_it_once(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    n = 600
    url = probe_db(tmp_path, n)
    args = ("upload", "--collector", collector.url, "--token", token, "--db", url, "--batch", "50")
    first, second = spawn(*args), spawn(*args)
    for proc in (first, second):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert_consistent(url, collector_db, n)


def _pg_ctl(pg_url: str, *args: str) -> None:
    try:
        pg_ctl(pg_url, *args)
    except Unavailable as exc:
        pytest.skip(str(exc))


def test_database_restarted_under_the_collector(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    if shutil.which("runuser") is None:
        pytest.skip("needs runuser")
    url = probe_db(tmp_path, 200)
    assert upload(url, collector, token, "--batch", "100").returncode == 0
    _pg_ctl(collector_db, "stop", "-m", "fast")
    try:
        with Store.open(url) as store:
            store.import_measurements(H.batch(100))
        down = upload(url, collector, token, "--batch", "100")
        assert down.returncode == 5
        assert "503" in down.stderr and "database unavailable" in down.stderr
    finally:
        _pg_ctl(collector_db, "start")
    done = upload(url, collector, token, "--batch", "100")
    assert done.returncode == 0, done.stderr + collector.output()[-2000:]
    assert_consistent(url, collector_db, 300)
    assert "Traceback" not in collector.output()


def test_two_collector_processes_on_one_database_store_a_batch_once(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    """Behind a load balancer: the same backlog through two processes at once."""
    other = CollectorProcess(collector_db, tmp_path / "other.log").start()
    try:
        n = 400
        url = probe_db(tmp_path, n)
        runs = [
            spawn("upload", "--collector", c.url, "--token", token, "--db", url, "--batch", "50")
            for c in (collector, other)
        ]
        for proc in runs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        other.stop()
    held = ids(collector_db)
    assert len(held) == len(set(held)) == n and count(collector_db, "observations") == n
    # Each process confirmed every measurement under its own URL.
    assert count(url, "uploads") == 2 * n
    assert token[5:] not in other.output()


def _rebuild_from_scratch(collector_db: str) -> str:
    """Drop the collector's database and make it anew, empty, under the same name
    (a collector rebuilt from scratch); the vantage registered again: its new token."""
    import psycopg
    from sqlalchemy import make_url

    url = make_url(collector_db)
    conninfo = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{url.database}"')
    with Store.open(collector_db) as store:
        return Registry(store.database).add(H.PTCL)[1]


def test_upload_by_hand_reads_the_daemons_config(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    """`probe upload -c FILE` sends to the config's collector with its token,
    batch and database; what is given on the command line wins."""
    url = probe_db(tmp_path, 30)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[vantage]\nname = "lahore-ptcl"\n[storage]\nurl = "{url}"\n'
        f'[upload]\nurl = "{collector.url}"\ntoken = "{token}"\nbatch = 7\n'
    )
    done = probe("upload", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "uploaded 30 measurement(s) of vantage lahore-ptcl: 30 new" in done.stdout
    assert_consistent(url, collector_db, 30)
    assert count(url, "uploads") == 30
    wrong = probe("upload", "-c", str(config), "--token", "rpv1_" + "x" * 43, "--resend")
    assert wrong.returncode == 5 and "token" in wrong.stderr  # the option won
    bare = tmp_path / "bare.toml"
    bare.write_text('[vantage]\nname = "lahore-ptcl"\n')
    missing = probe("upload", "-c", str(bare))
    assert (missing.returncode, missing.stdout) == (2, ""), missing.stderr
    assert missing.stderr == (
        "probe: no collector: give --collector URL or [upload] url in the config (-c)\n"
    )
    nothing = probe("upload", "--collector", collector.url)
    assert nothing.returncode == 2 and nothing.stderr.startswith("probe: no upload token")
    broken = probe("upload", "-c", str(tmp_path / "none.toml"))
    assert broken.returncode == 2 and "no such file" in broken.stderr
    assert len(broken.stderr.splitlines()) == 1


def test_upload_by_hand_with_the_token_kept_out_of_the_config(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    """The config keeps its token out of the file (``token = ""``, the daemon gets
    it from REACHPROBE_UPLOAD_TOKEN in its unit) and the token is given by hand:
    `probe upload -c FILE --token T` uploads (the option wins) instead of refusing
    the config for a missing token."""
    url = probe_db(tmp_path, 5)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[vantage]\nname = "lahore-ptcl"\n[storage]\nurl = "{url}"\n'
        f'[upload]\nurl = "{collector.url}"\ntoken = ""\n'
    )
    done = probe("upload", "-c", str(config), "--token", token)
    assert done.returncode == 0, done.stderr
    assert "uploaded 5 measurement(s) of vantage lahore-ptcl: 5 new" in done.stdout
    assert_consistent(url, collector_db, 5)
    missing = probe("upload", "-c", str(config))  # no token anywhere: still one line, exit 2
    assert missing.returncode == 2 and "upload.token" in missing.stderr, missing.stderr
    assert len(missing.stderr.splitlines()) == 1


def test_upload_by_hand_refuses_a_token_of_another_vantage_than_the_configs(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    """`probe upload -c FILE` (by hand, or from cron instead of the daemon) with a
    token registered under another name than the config's [vantage] name is
    refused in one line, exit 5, as the daemon refuses it: none of this probe's
    measurements would ever be that token's, and an exit 0 every time would let
    the backlog grow without a word."""
    url = probe_db(tmp_path, 3, others=2)  # this probe measures as karachi-jazz
    config = tmp_path / "config.toml"
    config.write_text(
        f'[vantage]\nname = "karachi-jazz"\n[storage]\nurl = "{url}"\n'
        f'[upload]\nurl = "{collector.url}"\ntoken = "{token}"\n'  # lahore-ptcl's
    )
    done = probe("upload", "-c", str(config))
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert "'lahore-ptcl'" in done.stderr and "'karachi-jazz'" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    assert count(collector_db) == 0 and count(url, "uploads") == 0


def test_resend_fills_a_collector_rebuilt_at_the_same_url_once(
    tmp_path: Path, collector: CollectorProcess, token: str, collector_db: str
) -> None:
    url = probe_db(tmp_path, 40, others=2)
    first = upload(url, collector, token, "--batch", "15")
    assert first.returncode == 0 and "40 new" in first.stdout, first.stderr
    collector.stop()
    token = _rebuild_from_scratch(collector_db)
    collector.start()  # the same URL, an empty database
    assert count(collector_db) == 0
    plain = upload(url, collector, token)  # the backlog is keyed by URL: nothing to send
    assert plain.returncode == 0 and "uploaded 0 measurement(s)" in plain.stdout, plain.stderr
    again = upload(url, collector, token, "--resend", "--batch", "15")
    assert again.returncode == 0, again.stderr
    assert "uploaded 40 measurement(s) of vantage lahore-ptcl: 40 new, 0 already" in again.stdout
    assert_consistent(url, collector_db, 40)  # nothing lost
    twice = upload(url, collector, token, "--resend")  # what it has: duplicates, not rows
    assert twice.returncode == 0, twice.stderr
    assert "uploaded 40 measurement(s) of vantage lahore-ptcl: 0 new, 40 already" in twice.stdout
    assert_consistent(url, collector_db, 40)  # nothing twice
    assert count(url) == 42 and count(url, "uploads") == 40
    wrong = upload(url, collector, "rpv1_" + "x" * 43, "--resend")
    assert wrong.returncode == 5 and count(url, "uploads") == 40  # a refused token forgets nothing


@pytest.mark.parametrize("workers", [1, 2])
def test_collector_serves_https_and_refuses_a_bad_key_in_one_line(
    tmp_path: Path, token: str, collector_db: str, workers: int
) -> None:
    import httpx

    from collectors.upload import trust

    chain, key, bundle = own_ca_certificate(tmp_path)
    tls = ("--tls-cert", str(chain), "--tls-key", str(key), "--workers", str(workers))
    served = CollectorProcess(collector_db, tmp_path / "tls.log", extra=tls).start()
    try:
        assert served.url.startswith("https://127.0.0.1:")
        for _ in range(workers):  # each worker (they take connections in turn)
            answer = httpx.get(
                served.url + "/api/v1/vantage",
                headers={"Authorization": f"Bearer {token}"},
                verify=trust(str(bundle)),
            )
            assert answer.status_code == 200 and answer.json()["name"] == "lahore-ptcl"
    finally:
        served.stop()
    bad = probe("collector", "serve", "--db", collector_db, "--tls-cert", str(chain),
                "--tls-key", str(chain))  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("probe: cannot load TLS certificate")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_upload_trusts_the_ca_bundle_it_is_given(
    tmp_path: Path, https_collector: HttpsCollector, token: str, collector_db: str
) -> None:
    served, ca = https_collector.proc, https_collector.ca
    url = probe_db(tmp_path, 5)
    unknown = upload(url, served, token)  # the usual CAs do not know the collector's
    assert unknown.returncode == 5, unknown.stderr
    assert "certificate verify failed" in unknown.stderr and "--ca-bundle" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    for bundle, reason in (
        (tmp_path / "missing.pem", "No such file or directory"),
        (not_pem, "no certificate or crl found"),
        (tmp_path, "Is a directory"),
    ):
        bad = upload(url, served, token, "--ca-bundle", str(bundle))
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr == f"probe: cannot read CA bundle {bundle}: {reason}\n"
    assert count(collector_db) == 0 and count(url, "uploads") == 0
    done = upload(url, served, token, "--ca-bundle", str(ca))
    assert done.returncode == 0, done.stderr
    assert "uploaded 5 measurement(s) of vantage lahore-ptcl: 5 new" in done.stdout
    assert_consistent(url, collector_db, 5)


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """What answers at an http:// URL when the collector is behind HTTPS (nginx's
    ``return 301 https://...``)."""

    def do_GET(self) -> None:
        self.send_response(301)
        self.send_header("Location", f"https://collector.example{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_redirect_is_named_not_followed(tmp_path: Path) -> None:
    """The token never follows a redirect; the one line says where it pointed."""
    url = probe_db(tmp_path, 2)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        done = probe("upload", "--collector", f"http://127.0.0.1:{port}", "--token",
                     "rpv1_" + "x" * 43, "--db", url)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 5, done.stderr
    assert done.stderr == (
        f"probe: collector at http://127.0.0.1:{port} redirects to "
        "https://collector.example/api/v1/vantage (301); if that is the collector, give its "
        "URL (an upload never follows a redirect)\n"
    )
    assert count(url, "uploads") == 0


def _workers(collector: CollectorProcess, expected: int, timeout: float = 30) -> set[int]:
    """The pids of the collector's worker processes, once there are ``expected``."""
    assert collector.proc is not None
    parent = str(collector.proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == parent:
                found.add(int(stat.parent.name))
        listening = collector.output().count("collector listening on")
        if len(found) == expected and listening >= expected:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not {expected} workers: {collector.output()[-2000:]}")


def test_a_worker_killed_as_soon_as_it_serves_is_replaced(
    tmp_path: Path, collector_db: str
) -> None:
    """Whether a dead worker is replaced depends on whether it had begun to serve, not on
    how long ago it was forked (a busy machine made a kill 2 s after the fork look like
    a worker that cannot start, and the whole collector stopped)."""
    collector = CollectorProcess(collector_db, tmp_path / "workers.log", extra=("--workers", "2"))
    collector.start()
    try:
        deadline = time.monotonic() + 30
        while collector.output().count(" is serving") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        first = _workers(collector, 2)
        os.kill(min(first), signal.SIGKILL)
        while collector.output().count(" is serving") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "exited (-9): starting another" in collector.output(), collector.output()[-3000:]
        assert len(_workers(collector, 2) & first) == 1
    finally:
        assert collector.stop() == 0, collector.output()[-3000:]


def test_workers_serve_one_address_and_a_killed_one_is_replaced(
    tmp_path: Path, collector_db: str, token: str
) -> None:
    collector = CollectorProcess(collector_db, tmp_path / "workers.log", extra=("--workers", "2"))
    collector.start()
    second: set[int] = set()
    try:
        first = _workers(collector, 2)
        n = 400
        url = probe_db(tmp_path, n)
        args = ("upload", "--collector", collector.url, "--token", token, "--db", url)
        uploads = [spawn(*args, "--batch", "20") for _ in range(2)]
        wait_for_rows(collector_db, 60)
        killed = min(first)
        os.kill(killed, signal.SIGKILL)  # mid-upload: its batch may be committed, unanswered
        for proc in uploads:
            proc.communicate(timeout=120)  # 0, or 5 if its request was on the killed worker
        retried = upload(url, collector, token, "--batch", "20")  # the survivor, or its new twin
        assert retried.returncode == 0, retried.stderr + collector.output()[-3000:]
        assert_consistent(url, collector_db, n)
        second = _workers(collector, 2)
        assert killed not in second and len(second & first) == 1, collector.output()[-3000:]
        assert "exited (-9): starting another" in collector.output()
    finally:
        assert collector.stop() == 0, collector.output()[-3000:]
    assert not any(Path(f"/proc/{pid}").exists() for pid in second)  # all stopped with it
    assert "Traceback" not in collector.output()


def test_workers_take_kept_alive_connections_in_turn(tmp_path: Path, collector_db: str) -> None:
    """Two probes' keep-alive connections go to two workers. Left to the kernel, one
    worker often accepted both, and decoded for both on one core while the other idled."""
    collector = CollectorProcess(collector_db, tmp_path / "turns.log", extra=("--workers", "2"))
    collector.start()
    try:
        workers = _workers(collector, 2)
        port = int(collector.url.rsplit(":", 1)[1])
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for client in clients:  # a request on each, the connection kept open
            client.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: collector\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        holders = [_holder(workers, port, c.getsockname()[1]) for c in clients]
        assert holders[0] != holders[1] and holders[:2] == holders[2:], holders
        for client in clients:
            client.close()
    finally:
        assert collector.stop() == 0, collector.output()[-3000:]


def _holder(pids: set[int], port: int, client_port: int) -> int:
    """The process among ``pids`` that holds the server's end of the connection from
    ``client_port`` to ``port`` on loopback."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
        if (local, remote) == (port, client_port):
            inode = fields[9]
    assert inode is not None, f"no connection from port {client_port}"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_a_worker_that_cannot_start_stops_the_collector_in_one_line(pg_server: str) -> None:
    """A role allowed one connection: the collector migrates and lets it go, one worker
    takes it, the other cannot connect. The collector stops, with that worker's exit
    status (4: the database) and one line, and leaves no worker behind."""
    import psycopg
    from sqlalchemy import make_url

    server = make_url(pg_server)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    role, name = f"probe_one_{os.getpid()}", f"probe_one_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    url = server.set(username=role, database=name).render_as_string(hide_password=False)
    try:
        done = probe("collector", "serve", "--db", url, "--listen", "127.0.0.1:0",
                     "--workers", "2", timeout=60)  # fmt: skip
        assert done.returncode == 4, done.stderr[-3000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("probe: collector worker ") and "exited (4) right after" in last
        assert "Traceback" not in done.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
