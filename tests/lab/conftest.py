"""Fixtures for the namespace lab: one topology per session, one scenario per test.

Without root or a required tool the lab tests are skipped with the reason,
except under CI (``CI`` set and not false/0), where they fail: a skipped lab
in CI would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.lab.topology import Lab, running_lab

REQUIRED_TOOLS = ("ip", "iptables", "iptables-save", "sysctl", "dnsmasq", "nginx")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_prerequisite() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the namespace lab needs root (run: unshare --net sh -c 'ip link set lo up && ...')"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the namespace lab needs these tools on PATH: {', '.join(missing)}"
    probe = f"rpcheck{uuid.uuid4().hex[:6]}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    return None


def require(reason: str | None) -> None:
    """Skip for ``reason`` locally; fail under CI."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"lab prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    require(missing_prerequisite())
    with running_lab() as started:
        yield started


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The lab, guaranteed clean before and after the test."""
    lab.reset()
    yield lab
    lab.reset()
