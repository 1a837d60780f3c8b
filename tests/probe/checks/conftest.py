"""The checks' hostile-server tests run under both event loops the probe can use
(:mod:`probe.eventloop`): asyncio's and uvloop's name failures from their own
exceptions, and a measurement must not depend on which loop took it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

BOTH_LOOPS = {"test_tcp", "test_tls", "test_http", "test_doh", "test_timer"}
"""Modules whose every test runs under both loops; in test_dns only the tests of
socket errors do (the rest parse replies, the same under either loop)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    name = metafunc.function.__name__
    both = module in BOTH_LOOPS or (
        module == "test_dns" and any(w in name for w in ("refused", "closed", "tcp", "silent"))
    )
    if "event_loop_kind" in metafunc.fixturenames:
        metafunc.parametrize("event_loop_kind", ["asyncio", "uvloop"] if both else ["asyncio"])


@pytest.fixture(autouse=True)
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """asyncio.run() runs on this loop during the test."""
    kind: str = getattr(request, "param", "asyncio")
    if kind == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield kind
    finally:
        asyncio.set_event_loop_policy(None)
