"""The real ``probe`` command against every lab scenario.

The probe runs as a subprocess inside the vantage namespace with the
documented invocation (:meth:`Lab.probe_argv`); its JSON lines must carry the
verdict, blocking methods and trigger the scenario table in
:mod:`tests.lab.scenarios` demands, the documented exit status, and arrive
within the time bound the ``--timeout`` promises.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.lab.scenarios import SCENARIOS, Expect, applied
from tests.lab.topology import LAB_NAMES, Lab

TIMEOUT = 4.0
DOMAIN_BOUND_S = TIMEOUT + 2  # one domain's verdict (duration_ms)
RUN_BOUND_S = TIMEOUT + 3  # a whole invocation, interpreter start included
KEYS = {
    *("schema", "domain", "verdict", "blocking", "trigger", "started_at", "duration_ms"),
    *("dns", "endpoints", "http", "control"),
}


@dataclass(frozen=True)
class ProbeRun:
    status: int
    results: dict[str, dict[str, Any]]
    wall_s: float
    stdout: str
    stderr: str

    def context(self) -> str:
        head = f"exit {self.status} after {self.wall_s:.1f}s"
        return f"{head}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-3000:]}"


def run_probe(
    lab: Lab,
    domains: tuple[str, ...],
    platform: str | None = None,
    extra: Sequence[str] = (),
    prefix: Sequence[str] = (),
    store: bool = False,
) -> ProbeRun:
    """Run the probe (``extra``: more options; ``prefix``: a command that runs it, such as
    ``prlimit``; ``store``: without ``--no-store``, ``extra`` names the database); a domain
    reported twice is a contract violation, caught here."""
    argv = [*prefix, *lab.probe_argv(domains, platform=platform, timeout=TIMEOUT), *extra]
    if store:
        argv.remove("--no-store")
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 60, check=False)
    wall = time.monotonic() - start
    results: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            record = json.loads(line)
            assert isinstance(record, dict), line
            assert record["domain"] not in results, f"{record['domain']} reported twice"
            results[record["domain"]] = record
    return ProbeRun(proc.returncode, results, wall, proc.stdout, proc.stderr)


def assert_result(result: dict[str, Any], expect: Expect, context: str) -> None:
    domain = result.get("domain")
    assert set(result) >= KEYS, f"{domain}: missing keys {KEYS - set(result)}\n{context}"
    assert result["schema"] == "probe.check/1", context
    got = (result["verdict"], sorted(result["blocking"]), result["trigger"])
    assert result["verdict"] == expect.verdict, f"{domain}: got {got}\n{context}"
    if expect.exact:
        assert set(result["blocking"]) == expect.blocking, f"{domain}: got {got}\n{context}"
    else:
        assert expect.blocking <= set(result["blocking"]), f"{domain}: got {got}\n{context}"
    assert len(result["blocking"]) == len(set(result["blocking"])), f"{domain}: duplicates in {got}"
    assert result["trigger"] == expect.trigger, f"{domain}: got {got}\n{context}"
    assert result["duration_ms"] <= DOMAIN_BOUND_S * 1000, (
        f"{domain}: {result['duration_ms']} ms\n{context}"
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(clean_lab: Lab, name: str) -> None:
    with applied(clean_lab, name) as scenario:
        run = run_probe(clean_lab, scenario.domains, scenario.platform)
    context = f"scenario {name} ({scenario.summary})\n{run.context()}"
    assert run.status == scenario.exit_status, context
    assert run.wall_s <= RUN_BOUND_S, context
    if scenario.domains:
        assert set(run.results) == set(scenario.domains), context
    else:  # a platform run: the lab serves every name the platform needs
        assert "x.com" in run.results and any(d.endswith(".twimg.com") for d in run.results), (
            context
        )
        assert set(run.results) <= set(LAB_NAMES), f"names the lab does not serve\n{context}"
    for domain, result in run.results.items():
        assert_result(result, scenario.expect_for(domain), context)


def test_clean_platform_run(clean_lab: Lab) -> None:
    run = run_probe(clean_lab, (), platform="x")
    context = run.context()
    assert run.status == 0, context
    assert run.wall_s <= RUN_BOUND_S, context
    assert "x.com" in run.results and set(run.results) <= set(LAB_NAMES), context
    for result in run.results.values():
        assert_result(result, Expect("accessible"), context)


def test_several_domains_one_line_each(clean_lab: Lab) -> None:
    domains = ("x.com", "t.co", "pbs.twimg.com")
    with applied(clean_lab, "sni_reset"):
        run = run_probe(clean_lab, domains)
    context = run.context()
    assert run.status == 1, context
    reported = [json.loads(line)["domain"] for line in run.stdout.splitlines() if line.strip()]
    assert sorted(reported) == sorted(domains), context  # one line each, in any order
    assert_result(run.results["x.com"], SCENARIOS["sni_reset"].expect, context)
    for domain in domains[1:]:
        assert_result(run.results[domain], Expect("accessible"), context)
