"""The Docker image without a Docker engine: ``deploy/docker-smoke.sh`` reads the
Dockerfile, installs the package as its build stage does, writes the image's
config with the image's own ``probe init`` step and runs ENTRYPOINT + CMD as
the image's user (uid 10001) in a network namespace of its own (loopback only).

It found the image broken: ``probe init`` writes the config 0600 for root
(it may hold a password), so the daemon's user could not read it and every
container stopped at once (``cannot read: Permission denied``, exit 2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.lab.conftest import require

ROOT = Path(__file__).resolve().parents[1]


def test_the_image_starts_its_daemon_as_its_own_user_and_stops_cleanly() -> None:
    missing = [tool for tool in ("unshare", "setpriv", "ip") if shutil.which(tool) is None]
    require(
        "deploy/docker-smoke.sh needs root" if os.geteuid() != 0
        else f"deploy/docker-smoke.sh needs {', '.join(missing)}" if missing
        else None
    )  # fmt: skip
    run = subprocess.run(
        ["sh", str(ROOT / "deploy" / "docker-smoke.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "smoke: ok" in output
    assert "smoke.test: offline" in output  # one check stored by the image's daemon
    assert "Traceback" not in output
