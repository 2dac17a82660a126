"""Waiting, bounded, until a Redis store's result subscriber is live.

A wait on the result bus subscribes in the background; a test that publishes too early would
prove nothing. The probe is a bare PUBLISH on the result channel, without the SET of
``publish_result``, so only a live subscription can hand it to the probe's wait; it is
repeated until heard, for ``POLL_DEADLINE_S`` at most.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from mfa_radius.ports import ResultBus

POLL_INTERVAL_S = 0.01
"""Pause between two looks at a condition the test waits for."""

POLL_DEADLINE_S = 5.0
"""Longest wait for a condition (a subscription, a closed connection) before the test fails."""

PROBE_KEY = "subscription-probe"
"""The result key the probe publishes under (no test uses it)."""


async def until_subscribed(node: ResultBus, publisher: Redis, prefix: str = "mfa:") -> None:
    """Return once ``node``'s subscriber hears results published through ``publisher``."""
    probe = asyncio.create_task(node.wait_result(PROBE_KEY, POLL_DEADLINE_S))
    try:
        while not probe.done():
            await publisher.publish(f"{prefix}res:{PROBE_KEY}", PROBE_KEY)
            await asyncio.sleep(POLL_INTERVAL_S)
    except BaseException:
        probe.cancel()
        raise
    assert await probe == PROBE_KEY, f"no subscription within {POLL_DEADLINE_S} s"


async def until_subscribed_at(node: ResultBus, url: str, prefix: str = "mfa:") -> None:
    """:func:`until_subscribed`, publishing through a client of its own on ``url``."""
    async with Redis.from_url(url) as publisher:
        await until_subscribed(node, publisher, prefix)
