"""The ResultBus contract (ports.ResultBus), run against every store adapter.

Each test runs on MemoryChallengeStore and on RedisChallengeStore; see conftest.py for the
environment. Waiting for a published result is real time on the event loop, so these tests use
short timeouts; a wait that must be listening before a publish is started with
``wait_in_background``, which polls for that instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from mfa_radius.ports import SharedState
from tests.adapters.contract.conftest import TTL, StoreEnv

WAIT_S = 60.0
"""Timeout of a wait that must end by a result: it never runs out while a test lasts."""
WAKE_BOUND_S = 5.0
"""Deadline for a waiter to get its result: generous, yet far below WAIT_S, so that only the
result itself meets it, never the wait's own timeout (after which Redis reads once more)."""


async def wait_in_background(
    env: StoreEnv, node: SharedState, key: str
) -> asyncio.Task[str | None]:
    """Start a wait on ``key`` and return once it is registered and subscribed."""
    task = asyncio.create_task(node.wait_result(key, WAIT_S))
    await env.listening(node)
    assert not task.done()
    return task


class TestResults:
    async def test_wait_returns_result_published_before(self, env: StoreEnv) -> None:
        """A result published before the wait began is returned at once."""
        await env.peer.publish_result("t1", "approve", TTL)
        async with asyncio.timeout(WAKE_BOUND_S):
            assert await env.store.wait_result("t1", WAIT_S) == "approve"

    async def test_wait_wakes_when_other_node_publishes(self, env: StoreEnv) -> None:
        """A waiter on one node wakes promptly when another node publishes."""
        task = await wait_in_background(env, env.store, "t1")
        await env.peer.publish_result("t1", "fraud", TTL)
        assert await asyncio.wait_for(task, WAKE_BOUND_S) == "fraud"

    async def test_wait_wakes_every_waiter_on_key(self, env: StoreEnv) -> None:
        """Every waiter on the key, on either node, gets the result."""
        tasks = [await wait_in_background(env, node, "t1") for node in (env.store, env.peer)]
        await env.store.publish_result("t1", "approve", TTL)
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAKE_BOUND_S) == ["approve"] * 2

    async def test_wait_ignores_results_for_other_keys(self, env: StoreEnv) -> None:
        """A result under another key does not end the wait."""
        task = await wait_in_background(env, env.store, "t1")
        await env.peer.publish_result("t2", "approve", TTL)
        await env.peer.publish_result("t1x", "approve", TTL)
        await asyncio.sleep(0.1)  # time for a wrong wake-up to show: there is nothing to poll for
        assert not task.done()
        await env.peer.publish_result("t1", "deny", TTL)
        assert await asyncio.wait_for(task, WAKE_BOUND_S) == "deny"

    async def test_wait_returns_none_when_timed_out(self, env: StoreEnv) -> None:
        """Without a result, the wait ends with None after its timeout."""
        started = time.monotonic()
        async with asyncio.timeout(WAKE_BOUND_S):
            assert await env.store.wait_result("t1", 0.1) is None
        # Kept on purpose: both stores wait on the event loop's clock, which no test can fake,
        # and nothing else shows that the wait did not end early.
        assert time.monotonic() - started >= 0.09

    async def test_wait_returns_none_when_result_expired(self, env: StoreEnv) -> None:
        """A result older than its TTL is no longer returned."""
        await env.store.publish_result("t1", "approve", 10.0)
        await env.advance(10.5)
        assert await env.store.wait_result("t1", 0.05) is None

    async def test_result_survives_until_ttl(self, env: StoreEnv) -> None:
        """Shortly before its TTL, a result is still returned."""
        await env.store.publish_result("t1", "approve", 10.0)
        await env.advance(9.0)
        assert await env.peer.wait_result("t1", 0.05) == "approve"

    async def test_publish_overwrites_result(self, env: StoreEnv) -> None:
        """A second publish under the same key replaces the first value."""
        await env.store.publish_result("t1", "approve", TTL)
        await env.store.publish_result("t1", "fraud", TTL)
        assert await env.store.wait_result("t1", 0.05) == "fraud"

    async def test_result_keeps_non_ascii_text(self, env: StoreEnv) -> None:
        """Any text comes back unchanged."""
        await env.store.publish_result("t1", "approuvé ✓", TTL)
        assert await env.peer.wait_result("t1", 0.05) == "approuvé ✓"

    async def test_wait_rejects_non_finite_timeout(self, env: StoreEnv) -> None:
        """A wait without an end is a programming error."""
        with pytest.raises(ValueError, match="finite"):
            await env.store.wait_result("t1", float("inf"))

    async def test_close_ends_wait_with_none(self, env: StoreEnv) -> None:
        """Closing the store wakes its waiters with None instead of leaving them hanging."""
        task = await wait_in_background(env, env.store, "t1")
        await env.store.close()
        assert await asyncio.wait_for(task, WAKE_BOUND_S) is None
