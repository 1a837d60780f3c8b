"""Project-wide checks: lint, types, and the lazy-import rule behind a fast ``probe --help``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["probe", "storage", "collectors", "schedules"]

# Modules too slow to import on a Raspberry Pi for every CLI start; commands
# import them inside their bodies.
HEAVY = {
    "dns",
    "httpx",
    "sqlalchemy",
    "alembic",
    "scapy",
    "matplotlib",
    "apscheduler",
    "cryptography",
    "prometheus_client",
    "psycopg",
    "storage",
    "schedules",
    "collectors",
    "starlette",
    "uvicorn",
    "anyio",
    "tenacity",
}


def test_cli_start_imports_nothing_heavy() -> None:
    code = (
        "import sys, probe.cli as c; c._register();"
        "c.app(['--help'], standalone_mode=False);"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert HEAVY.isdisjoint(out), f"imported at CLI start: {sorted(HEAVY.intersection(out))}"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_clean() -> None:
    result = subprocess.run(
        ["ruff", "check", *PACKAGES, "tests"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *PACKAGES, "tests", "benchmarks"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:]
