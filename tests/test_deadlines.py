"""The shared deadline timer: limits raise TimeoutError, other cancellations pass through."""

from __future__ import annotations

import asyncio

import pytest

from mfa_radius.deadlines import Deadlines

HANG_GUARD_S = 5.0
"""Deadline of a block whose 0.05 s limit must end it: a hundred times the limit."""


async def test_limit_raises_timeout_when_the_work_overruns() -> None:
    """A block that waits past its limit leaves with TimeoutError, soon after the limit.

    "Soon": the limit's TimeoutError leaves the block before the hang guard fires; had the
    limit not fired, the guard would cancel the sleep, the CancelledError would get past
    ``pytest.raises(TimeoutError)`` and the guard's own TimeoutError would fail the test.
    """
    deadlines = Deadlines(resolution=0.01)
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(TimeoutError), deadlines.limit(0.05):
            await asyncio.sleep(3600)
    assert len(deadlines) == 0
    deadlines.close()


async def test_limit_lets_quick_work_finish() -> None:
    """Work that ends in time returns its value; the finished deadline cancels nothing later."""
    deadlines = Deadlines(resolution=0.01)
    with deadlines.limit(0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the limit: the task must not be cancelled now
    assert len(deadlines) == 0
    deadlines.close()


async def test_outer_limit_wins_over_a_longer_inner_one() -> None:
    """A short outer limit interrupts a long inner one and is reported by the outer block."""
    deadlines = Deadlines(resolution=0.01)
    outcome = "none"
    try:
        with deadlines.limit(0.05):
            try:
                with deadlines.limit(5):
                    await asyncio.sleep(5)
            except TimeoutError:
                outcome = "inner"
    except TimeoutError:
        outcome = "outer"
    assert outcome == "outer"
    deadlines.close()


async def test_other_cancellation_passes_through() -> None:
    """A task cancelled for another reason (shutdown) sees CancelledError, not TimeoutError."""
    deadlines = Deadlines(resolution=0.01)

    async def work() -> None:
        with deadlines.limit(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(work())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadlines.close()


async def test_many_deadlines_share_one_timer() -> None:
    """A hundred concurrent limits expire together without a timer each."""
    deadlines = Deadlines(resolution=0.01)

    async def work() -> str:
        try:
            with deadlines.limit(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(*(work() for _ in range(100)))
    assert results == ["timeout"] * 100
    deadlines.close()
