"""probe.checks.timer.within behaves as asyncio.timeout does, under both loops."""

from __future__ import annotations

import asyncio
import time

import pytest

from probe.checks.timer import within


def test_a_step_past_its_delay_raises_timeout_error_in_time() -> None:
    async def scenario() -> float:
        start = time.monotonic()
        with pytest.raises(TimeoutError), within(0.05):
            await asyncio.sleep(5)
        return time.monotonic() - start

    assert 0.04 < asyncio.run(scenario()) < 1.0


def test_no_time_left_times_out_at_the_first_await() -> None:
    async def scenario() -> None:
        with within(-1.0):
            await asyncio.sleep(5)

    with pytest.raises(TimeoutError):
        asyncio.run(scenario())


def test_a_step_in_time_returns_and_leaves_no_timer_behind() -> None:
    async def scenario() -> str:
        with within(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # past the delay: the cancelled timer must not fire
        return "done"

    assert asyncio.run(scenario()) == "done"


def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    async def step() -> None:
        with within(5):
            await asyncio.sleep(5)

    async def scenario() -> None:
        task = asyncio.create_task(step())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(scenario())


def test_nested_the_inner_expiry_is_the_inner_blocks_timeout() -> None:
    async def scenario() -> str:
        with within(5):
            try:
                with within(0.02):
                    await asyncio.sleep(5)
            except TimeoutError:
                await asyncio.sleep(0)  # the outer block goes on, not cancelled
                return "inner"
        return "none"

    assert asyncio.run(scenario()) == "inner"


def test_outside_a_task_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError), within(1):
        pass
