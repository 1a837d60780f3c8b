"""The probe with a control helper, in the lab: the helper runs in the internet
namespace (tests.lab.helperlab) and every verdict it changes or must not change.

Its own lab instance, so the extra names and the helper never touch the
session lab the other lab tests share.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab import helperlab
from tests.lab.conftest import missing_prerequisite, require
from tests.lab.helperlab import BADCERT, MOVED, HelperLab
from tests.lab.scenarios import SCENARIOS, applied
from tests.lab.test_scenarios import RUN_BOUND_S, TIMEOUT, assert_result
from tests.lab.topology import LAB_NAMES, running_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def hlab() -> Iterator[HelperLab]:
    require(missing_prerequisite())
    with running_lab(prefix="rh") as lab:
        started = helperlab.start(lab)
        try:
            yield started
        finally:
            started.close()


@pytest.fixture
def clean(hlab: HelperLab) -> Iterator[HelperLab]:
    hlab.lab.reset()
    yield hlab
    hlab.lab.reset()


def check(
    h: HelperLab, *domains: str, helper: bool = True
) -> tuple[int, dict[str, dict[str, Any]], float, str]:
    argv = h.probe_argv(domains, TIMEOUT, helper)
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 60, check=False)
    wall = time.monotonic() - start
    results = {r["domain"]: r for r in map(json.loads, filter(None, proc.stdout.splitlines()))}
    context = f"exit {proc.returncode} after {wall:.1f}s\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.returncode, results, wall, context


def verdict(result: dict[str, Any]) -> tuple[str, list[str], str | None]:
    return result["verdict"], sorted(result["blocking"]), result["trigger"]


def test_server_down_everywhere_is_down(clean: HelperLab) -> None:
    clean.down("upload.x.com")
    try:
        status, results, _, context = check(clean, "upload.x.com")
    finally:
        clean.down("upload.x.com", up=True)
    result = results["upload.x.com"]
    assert verdict(result) == ("down", [], None), context
    assert status == 3, context
    assert any("could not connect either" in r for r in result["reasons"]), context
    helper = result["control"]["helper"]
    assert helper["failure"] is None and helper["saw_site"] is False, context


def test_the_sites_own_untrusted_certificate_is_not_blocking(clean: HelperLab) -> None:
    _, alone, _, context = check(clean, BADCERT, helper=False)
    assert verdict(alone[BADCERT]) == ("blocked", ["tls.invalid_cert"], "ip"), context  # the gap
    status, results, _, context = check(clean, BADCERT)
    assert status == 3, context
    result = results[BADCERT]
    assert verdict(result) == ("down", [], None), context
    assert any("the site's own certificate" in r for r in result["reasons"]), context


def test_the_sites_own_cross_site_redirect_is_accessible(clean: HelperLab) -> None:
    status, results, _, context = check(clean, MOVED)
    result = results[MOVED]
    assert verdict(result) == ("accessible", [], None), context
    assert status == 0, context
    https = result["endpoints"][0]["http"]
    plain = result["http"][0]["http"]
    assert https["status"] == 301 and plain["status"] == 301, context  # both schemes redirect
    redirects = result["control"]["helper"]["http"]["redirects"]
    assert [r["location"] for r in redirects][:1] == [helperlab.MOVED_TO], context


def test_blocked_helper_with_sni_filtering_is_still_blocked_in_time(clean: HelperLab) -> None:
    with applied(clean.lab, "sni_reset") as scenario:
        clean.block_helper()
        status, results, wall, context = check(clean, *scenario.domains)
    result = results["x.com"]
    assert verdict(result) == ("blocked", ["tls.reset"], "sni"), context
    assert status == 1, context
    assert result["duration_ms"] <= (TIMEOUT + 1) * 1000, context  # T + 1 s
    helper = result["control"]["helper"]
    assert helper["failure"] == "timeout" and helper["saw_site"] is None, context
    assert any("No control helper answered" in r for r in result["notes"]), context
    assert wall <= RUN_BOUND_S, context  # interpreter start included: slow on a loaded machine


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_is_unchanged_with_a_helper(clean: HelperLab, name: str) -> None:
    with applied(clean.lab, name) as scenario:
        argv_domains = scenario.domains
        if scenario.platform is not None:
            argv = [*clean.probe_argv((), TIMEOUT), "--platform", scenario.platform]
        else:
            argv = clean.probe_argv(argv_domains, TIMEOUT)
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 60)
        wall = time.monotonic() - start
    context = f"scenario {name} with a helper: exit {proc.returncode} after {wall:.1f}s\n"
    context += f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.returncode == scenario.exit_status, context
    results = {r["domain"]: r for r in map(json.loads, filter(None, proc.stdout.splitlines()))}
    assert results and set(results) <= set(LAB_NAMES), context
    for domain, result in results.items():
        assert_result(result, scenario.expect_for(domain), context)  # includes T + 2 s per domain
        assert result["control"]["helper"] is not None, context
    assert wall <= RUN_BOUND_S, context  # interpreter start included: slow on a loaded machine
