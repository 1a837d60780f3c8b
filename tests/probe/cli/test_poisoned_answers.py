"""Poisoned AAAA answers must not make ``probe check`` dial its own host.

IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) reach IPv4 through the
kernel, so a resolver answering them would make the probe talk to services
on its own machine or to the cloud metadata address.  The real command runs
in a network namespace of its own (``unshare --net``) where canary servers
listen on every local IPv4 address, ports 443 and 80, with 169.254.169.254
configured on loopback: a canary that is connected to is a failed test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a network namespace of its own (scripts/test)",
)

POISONED = {
    "mapped-loopback.test": "::ffff:127.0.0.1",
    "mapped-unspecified.test": "::ffff:0.0.0.0",
    "mapped-metadata.test": "::ffff:169.254.169.254",
    "nat64-loopback.test": "64:ff9b::7f00:1",
}

_CHILD = """
import json, socket, subprocess, sys, threading
from tests.probe.checks.dnsserver import answer, serve_in_thread

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"], check=True)
seen = []

def canary(port):
    listener = socket.create_server(("0.0.0.0", port), backlog=64)
    while True:
        conn, peer = listener.accept()
        seen.append([conn.getsockname()[0], port])
        conn.close()

for port in (443, 80):
    threading.Thread(target=canary, args=(port,), daemon=True).start()
poisoned = json.loads(sys.argv[1])
records = {name: answer(address) for name, address in poisoned.items()}
with serve_in_thread(records) as vantage, serve_in_thread(records) as control:
    run = subprocess.run(
        [sys.executable, "-m", "probe", "check", *poisoned,
         "--resolver", vantage.spec, "--control-resolver", control.spec,
         "--control-domain", "control.test", "--control-sni", "control.test",
         "--timeout", "3", "--json", "--no-store"],
        capture_output=True, text=True, timeout=60,
    )
print(json.dumps({"seen": seen, "status": run.returncode, "stdout": run.stdout,
                  "stderr": run.stderr}))
"""


def test_poisoned_mapped_answers_reach_no_local_service() -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", _CHILD, json.dumps(POISONED)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=root,
        check=True,
    )
    report = json.loads(done.stdout)
    context = f"stderr: {report['stderr']}\nstdout: {report['stdout']}"
    assert report["seen"] == [], context
    results = [json.loads(line) for line in report["stdout"].splitlines() if line.strip()]
    assert sorted(r["domain"] for r in results) == sorted(POISONED), context
    for result in results:
        assert result["verdict"] != "accessible", context
        endpoints = result["endpoints"] + result["http"]  # ports 443 and 80
        assert len(endpoints) == 2, context
        assert all(e["skipped"] == "address_unusable" for e in endpoints), context
