"""``python -m tests.lab shell``, as the README and docs/testing.md tell a new
user to step into the lab: the README's ``probe check --platform x`` works there
as shown, and what it stores stays in the lab (never in the user's database).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.lab.conftest import missing_prerequisite, require
from tests.lab.servers import REPO_ROOT


def test_the_readme_check_runs_in_the_shell_and_its_results_stay_in_the_lab(
    tmp_path: Path,
) -> None:
    require(missing_prerequisite())
    own_db = tmp_path / "mine.db"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PROBE_DB": str(own_db),  # the user's own database must not see a lab result
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",  # `probe` comes from the shell itself
    }
    env.pop("XDG_DATA_HOME", None)
    command = (
        'probe check --platform x $LAB_CHECK_FLAGS; status=$?; echo "lab=$LAB_DIR"; exit $status'
    )
    run = subprocess.run(
        [sys.executable, "-m", "tests.lab", "shell", "sni_reset", "-c", command],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr  # blocked, as the README says
    out = run.stdout
    assert "    probe check --platform x $LAB_CHECK_FLAGS\n" in out  # the banner's try line
    assert (
        "X (Twitter): BLOCKED from this network — x.com: SNI filtering (TLS reset); "
        "media hosts reachable; twitter.com, api.x.com, t.co reachable\n"
    ) in out
    lab_dir = out.rsplit("lab=", 1)[1].strip()
    stored = f"{lab_dir}/data/reachprobe/probe.db"
    assert "stored 7 of 7 result(s) as vantage " in out and f" in {stored}:" in out, out
    assert not own_db.exists() and not (tmp_path / ".local").exists()
    assert not Path(lab_dir).exists()  # gone with the lab
