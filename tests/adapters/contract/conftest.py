"""The store environment shared by the store ports' contract modules.

Each store contract test runs twice: on MemoryChallengeStore with a FakeClock, and on
RedisChallengeStore against a real redis-server. Time passes through ``env.advance``: the memory
store's clock moves, and in Redis every key's remaining TTL is shortened by a server-side script,
so both expire entries without sleeping (the one real-time expiry check is in
test_redis_store.py). Waiting for a published result is real time on the event loop, so those
tests use short timeouts. ``env.peer`` is a second node: a second RedisChallengeStore on the same
server, or, for the single-node memory store, the same instance. ``env.listening`` returns once a
wait started on a node will hear a publish from the other node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.core.model import Factor, PendingChallenge
from mfa_radius.ports import ResultBus, SharedState
from tests.support.clock import FakeClock
from tests.support.subscriptions import until_subscribed

TTL = 60.0


_SHIFT_TTLS_LUA = """
for _, key in ipairs(redis.call('KEYS', '*')) do
  local left = redis.call('PTTL', key)
  if left >= 0 then
    if left <= tonumber(ARGV[1]) then
      redis.call('DEL', key)
    else
      redis.call('PEXPIRE', key, left - tonumber(ARGV[1]))
    end
  end
end
"""
"""Make ARGV[1] milliseconds pass for every key with a TTL: Redis's virtual time."""


@dataclass(frozen=True)
class StoreEnv:
    """A store under test, a second node sharing its data, and ways to let time pass or wait.

    Attributes:
        store: the node under test.
        peer: a second node on the same data (the same instance for the memory store).
        advance: let seconds pass for every stored TTL.
        listening: return once waits started on the given node hear publishes from any node.
    """

    store: SharedState
    peer: SharedState
    advance: Callable[[float], Awaitable[None]]
    listening: Callable[[ResultBus], Awaitable[None]]


def make_record(attempts: int = 0) -> PendingChallenge:
    return PendingChallenge(
        username="alice",
        client="vpn-gw1",
        factor=Factor.SMS,
        created=1_700_000_000.123456,
        expires=1_700_000_120.654321,
        attempts=attempts,
        reply_attributes=((25, b"\x00class\xff"), (11, b"staff"), (26, bytes(range(256))[:253])),
        code_hash="9f" * 32,
    )


@pytest.fixture(params=["memory", "redis"])
async def env(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[StoreEnv]:
    """A store of each implementation, empty at the start of the test."""
    if request.param == "memory":
        memory = MemoryChallengeStore(clock)

        async def advance_clock(seconds: float) -> None:
            clock.advance(seconds)

        async def registered(node: ResultBus) -> None:
            # A memory wait registers on its task's first step, before its first await: one
            # turn of the event loop is exactly what it needs, no time has to pass.
            await asyncio.sleep(0)

        yield StoreEnv(store=memory, peer=memory, advance=advance_clock, listening=registered)
        await memory.close()
        return

    url: str = request.getfixturevalue("redis_url")
    node_a = RedisChallengeStore(url=url)
    node_b = RedisChallengeStore(url=url)
    admin = Redis.from_url(url)
    shift = admin.register_script(_SHIFT_TTLS_LUA)

    async def advance_ttls(seconds: float) -> None:
        await shift(args=[round(seconds * 1000)])

    async def subscribed(node: ResultBus) -> None:
        await until_subscribed(node, admin)

    yield StoreEnv(store=node_a, peer=node_b, advance=advance_ttls, listening=subscribed)
    await node_a.close()
    await node_b.close()
    await admin.aclose()
