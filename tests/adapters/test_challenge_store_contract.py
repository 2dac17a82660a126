"""The ChallengeStore contract, run against every implementation.

Each test runs twice: on MemoryChallengeStore with a FakeClock, and on RedisChallengeStore
against a real redis-server. Time passes through ``env.advance``: the memory store's clock moves,
and in Redis every key's remaining TTL is shortened by a server-side script, so both expire
entries without sleeping (the one real-time expiry check is in test_redis_store.py). Waiting for
a published result is real time on the event loop, so those tests use short timeouts.
``env.peer`` is a second node: a second RedisChallengeStore on the same server, or, for the
single-node memory store, the same instance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.core.model import Factor, PendingChallenge
from mfa_radius.ports import RequestClaim, SharedState
from tests.support.clock import FakeClock

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
    """A store under test, a second node sharing its data, and a way to let time pass."""

    store: SharedState
    peer: SharedState
    advance: Callable[[float], Awaitable[None]]


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

        yield StoreEnv(store=memory, peer=memory, advance=advance_clock)
        await memory.close()
        return

    url: str = request.getfixturevalue("redis_url")
    node_a = RedisChallengeStore(url=url)
    node_b = RedisChallengeStore(url=url)
    admin = Redis.from_url(url)
    shift = admin.register_script(_SHIFT_TTLS_LUA)

    async def advance_ttls(seconds: float) -> None:
        await shift(args=[round(seconds * 1000)])

    yield StoreEnv(store=node_a, peer=node_b, advance=advance_ttls)
    await node_a.close()
    await node_b.close()
    await admin.aclose()


class TestChallenges:
    async def test_get_returns_stored_challenge(self, env: StoreEnv) -> None:
        """A stored challenge is read back equal to what was stored."""
        await env.store.put_challenge("s1", make_record(), TTL)
        assert await env.store.get_challenge("s1") == make_record()

    async def test_get_returns_none_when_absent(self, env: StoreEnv) -> None:
        """Reading a key never written gives None."""
        assert await env.store.get_challenge("nope") is None

    async def test_get_does_not_consume(self, env: StoreEnv) -> None:
        """Reading a challenge leaves it in place for the next read."""
        await env.store.put_challenge("s1", make_record(), TTL)
        await env.store.get_challenge("s1")
        assert await env.store.get_challenge("s1") == make_record()

    async def test_put_overwrites_existing_challenge(self, env: StoreEnv) -> None:
        """A second put under the same key replaces the first record."""
        await env.store.put_challenge("s1", make_record(), TTL)
        await env.store.put_challenge("s1", make_record(attempts=2), TTL)
        assert await env.store.get_challenge("s1") == make_record(attempts=2)

    async def test_peer_reads_challenge_stored_by_other_node(self, env: StoreEnv) -> None:
        """A challenge stored through one node is visible through the other."""
        await env.store.put_challenge("s1", make_record(), TTL)
        assert await env.peer.get_challenge("s1") == make_record()

    async def test_reply_attributes_survive_round_trip(self, env: StoreEnv) -> None:
        """Attribute values with any byte, including NUL and 0xff, come back unchanged."""
        await env.store.put_challenge("s1", make_record(), TTL)
        record = await env.store.take_challenge("s1")
        assert record is not None
        assert record.reply_attributes == make_record().reply_attributes

    async def test_empty_reply_attributes_survive_round_trip(self, env: StoreEnv) -> None:
        """A challenge without pass-through attributes keeps an empty tuple, even after a count."""
        plain = PendingChallenge("bob", "vpn-gw1", Factor.TOTP, created=1.0, expires=2.0)
        await env.store.put_challenge("s1", plain, TTL)
        await env.store.add_attempt("s1")
        record = await env.store.get_challenge("s1")
        assert record is not None
        assert record.reply_attributes == ()

    async def test_challenge_expires_after_ttl(self, env: StoreEnv) -> None:
        """A challenge is gone once its TTL has passed."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(10.5)
        assert await env.store.get_challenge("s1") is None

    async def test_challenge_survives_until_ttl(self, env: StoreEnv) -> None:
        """A challenge is still there shortly before its TTL runs out."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(9.0)
        assert await env.store.get_challenge("s1") == make_record()

    async def test_put_restarts_ttl_when_overwriting(self, env: StoreEnv) -> None:
        """Overwriting a challenge gives it the new TTL."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(8.0)
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(8.0)
        assert await env.store.get_challenge("s1") == make_record()


class TestTakeChallenge:
    async def test_take_returns_challenge(self, env: StoreEnv) -> None:
        """Taking a stored challenge returns it."""
        await env.store.put_challenge("s1", make_record(), TTL)
        assert await env.store.take_challenge("s1") == make_record()

    async def test_take_is_one_shot(self, env: StoreEnv) -> None:
        """After one take, the challenge is gone for takes and reads."""
        await env.store.put_challenge("s1", make_record(), TTL)
        await env.store.take_challenge("s1")
        assert await env.store.take_challenge("s1") is None
        assert await env.store.get_challenge("s1") is None

    async def test_take_is_one_shot_when_concurrent(self, env: StoreEnv) -> None:
        """Of two concurrent takes, exactly one gets the challenge."""
        await env.store.put_challenge("s1", make_record(), TTL)
        results = await asyncio.gather(
            env.store.take_challenge("s1"), env.store.take_challenge("s1")
        )
        assert sorted(r is not None for r in results) == [False, True]

    async def test_take_is_one_shot_across_nodes(self, env: StoreEnv) -> None:
        """Of many concurrent takes on two nodes, exactly one gets the challenge."""
        await env.store.put_challenge("s1", make_record(), TTL)
        takes = [node.take_challenge("s1") for node in (env.store, env.peer) * 8]
        results = await asyncio.gather(*takes)
        assert [r for r in results if r is not None] == [make_record()]

    async def test_take_returns_none_when_absent(self, env: StoreEnv) -> None:
        """Taking a key never written gives None."""
        assert await env.store.take_challenge("nope") is None

    async def test_take_returns_none_when_expired(self, env: StoreEnv) -> None:
        """An expired challenge cannot be taken."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(10.5)
        assert await env.store.take_challenge("s1") is None


class TestAddAttempt:
    async def test_add_attempt_increments_count(self, env: StoreEnv) -> None:
        """Each call returns the next attempt count, starting from the stored one."""
        await env.store.put_challenge("s1", make_record(attempts=1), TTL)
        assert [await env.store.add_attempt("s1") for _ in range(3)] == [2, 3, 4]

    async def test_add_attempt_updates_record(self, env: StoreEnv) -> None:
        """The stored record carries the new count and is otherwise unchanged."""
        await env.store.put_challenge("s1", make_record(), TTL)
        await env.store.add_attempt("s1")
        assert await env.store.get_challenge("s1") == make_record(attempts=1)

    async def test_add_attempt_counts_every_concurrent_call(self, env: StoreEnv) -> None:
        """Concurrent calls on two nodes each get a distinct count; none is lost."""
        await env.store.put_challenge("s1", make_record(), TTL)
        counts = await asyncio.gather(
            *(node.add_attempt("s1") for node in (env.store, env.peer) * 5)
        )
        assert sorted(c or 0 for c in counts) == list(range(1, 11))

    async def test_add_attempt_keeps_ttl(self, env: StoreEnv) -> None:
        """Counting an attempt does not extend the challenge's life."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(6.0)
        await env.store.add_attempt("s1")
        await env.advance(4.5)
        assert await env.store.get_challenge("s1") is None

    async def test_add_attempt_does_not_shorten_ttl(self, env: StoreEnv) -> None:
        """A counted challenge lives until its original TTL."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.store.add_attempt("s1")
        await env.advance(9.0)
        assert await env.store.get_challenge("s1") == make_record(attempts=1)

    async def test_add_attempt_returns_none_when_absent(self, env: StoreEnv) -> None:
        """Counting on a missing challenge gives None and creates nothing."""
        assert await env.store.add_attempt("nope") is None
        assert await env.store.get_challenge("nope") is None

    async def test_add_attempt_returns_none_when_taken(self, env: StoreEnv) -> None:
        """Counting on a challenge already taken gives None."""
        await env.store.put_challenge("s1", make_record(), TTL)
        await env.store.take_challenge("s1")
        assert await env.store.add_attempt("s1") is None

    async def test_add_attempt_returns_none_when_expired(self, env: StoreEnv) -> None:
        """Counting on an expired challenge gives None."""
        await env.store.put_challenge("s1", make_record(), 10.0)
        await env.advance(10.5)
        assert await env.store.add_attempt("s1") is None


class TestMarkOnce:
    async def test_mark_once_is_true_only_for_first_caller(self, env: StoreEnv) -> None:
        """The first mark succeeds; repeats on either node fail while it exists."""
        assert await env.store.mark_once("m1", TTL) is True
        assert await env.store.mark_once("m1", TTL) is False
        assert await env.peer.mark_once("m1", TTL) is False

    async def test_mark_once_is_true_for_one_concurrent_caller(self, env: StoreEnv) -> None:
        """Of many concurrent marks on two nodes, exactly one succeeds."""
        results = await asyncio.gather(
            *(node.mark_once("m1", TTL) for node in (env.store, env.peer) * 5)
        )
        assert results.count(True) == 1

    async def test_mark_once_is_true_again_when_expired(self, env: StoreEnv) -> None:
        """After its TTL, the same mark can be set again."""
        await env.store.mark_once("m1", 10.0)
        await env.advance(10.5)
        assert await env.store.mark_once("m1", 10.0) is True

    async def test_mark_once_holds_until_ttl(self, env: StoreEnv) -> None:
        """Shortly before its TTL the mark still blocks."""
        await env.store.mark_once("m1", 10.0)
        await env.advance(9.0)
        assert await env.store.mark_once("m1", 10.0) is False

    async def test_mark_once_is_independent_of_challenges(self, env: StoreEnv) -> None:
        """A mark and a challenge with the same key do not interfere."""
        await env.store.put_challenge("k", make_record(), TTL)
        assert await env.store.mark_once("k", TTL) is True
        assert await env.store.get_challenge("k") == make_record()


class TestRequestClaims:
    async def test_claim_request_makes_first_caller_owner(self, env: StoreEnv) -> None:
        """The first claim owns the request."""
        assert await env.store.claim_request("r1", TTL) == RequestClaim(owner=True)

    async def test_claim_request_reports_in_progress_when_claimed(self, env: StoreEnv) -> None:
        """A second claim, on either node, is told the request is being worked on."""
        await env.store.claim_request("r1", TTL)
        assert await env.peer.claim_request("r1", TTL) == RequestClaim(owner=False, reply=None)
        assert await env.store.claim_request("r1", TTL) == RequestClaim(owner=False, reply=None)

    async def test_claim_request_returns_stored_reply(self, env: StoreEnv) -> None:
        """After the owner stores its reply, a duplicate gets those exact bytes."""
        reply = b"\x0b\x2a\x00\x14" + bytes(range(16))
        await env.store.claim_request("r1", TTL)
        await env.store.store_reply("r1", reply, TTL)
        assert await env.peer.claim_request("r1", TTL) == RequestClaim(owner=False, reply=reply)

    async def test_claim_request_has_one_owner_when_concurrent(self, env: StoreEnv) -> None:
        """Of many concurrent claims on two nodes, exactly one owns the request."""
        claims = await asyncio.gather(
            *(node.claim_request("r1", TTL) for node in (env.store, env.peer) * 5)
        )
        assert [c.owner for c in claims].count(True) == 1

    async def test_claim_request_is_owner_again_when_expired(self, env: StoreEnv) -> None:
        """Once the claim's TTL has passed, the next claim owns the request."""
        await env.store.claim_request("r1", 5.0)
        await env.advance(5.5)
        assert await env.store.claim_request("r1", 5.0) == RequestClaim(owner=True)

    async def test_stored_reply_expires_after_ttl(self, env: StoreEnv) -> None:
        """A cached reply is forgotten after its own TTL."""
        await env.store.claim_request("r1", 5.0)
        await env.store.store_reply("r1", b"reply", 30.0)
        await env.advance(29.0)
        assert await env.store.claim_request("r1", 5.0) == RequestClaim(False, b"reply")
        await env.advance(1.5)
        assert await env.store.claim_request("r1", 5.0) == RequestClaim(owner=True)


class TestLifecycle:
    async def test_ping_succeeds_when_store_is_up(self, env: StoreEnv) -> None:
        """Ping returns without error on a working store."""
        await env.store.ping()


WAKE_BOUND_S = 0.5
"""Longest acceptable delay between a publish and the waiter's wake-up (loopback, idle host)."""


class TestCounters:
    async def test_count_increments_from_one(self, env: StoreEnv) -> None:
        """Each hit returns the next value, starting at 1."""
        assert [await env.store.count("c1", TTL) for _ in range(3)] == [1, 2, 3]

    async def test_count_is_shared_across_nodes(self, env: StoreEnv) -> None:
        """Hits on either node add to the same counter."""
        await env.store.count("c1", TTL)
        assert await env.peer.count("c1", TTL) == 2

    async def test_count_counts_every_concurrent_hit(self, env: StoreEnv) -> None:
        """Concurrent hits on two nodes each get a distinct value; none is lost."""
        values = await asyncio.gather(
            *(node.count("c1", TTL) for node in (env.store, env.peer) * 5)
        )
        assert sorted(values) == list(range(1, 11))

    async def test_count_restarts_when_window_passed(self, env: StoreEnv) -> None:
        """After the window, the next hit starts a new counter at 1."""
        await env.store.count("c1", 10.0)
        await env.store.count("c1", 10.0)
        await env.advance(10.5)
        assert await env.store.count("c1", 10.0) == 1

    async def test_count_holds_until_window_passed(self, env: StoreEnv) -> None:
        """Shortly before the window ends, hits still add up."""
        await env.store.count("c1", 10.0)
        await env.advance(9.0)
        assert await env.store.count("c1", 10.0) == 2

    async def test_count_window_starts_at_first_hit(self, env: StoreEnv) -> None:
        """Later hits do not extend the window opened by the first."""
        await env.store.count("c1", 10.0)
        await env.advance(6.0)
        await env.store.count("c1", 10.0)
        await env.advance(4.5)
        assert await env.store.peek_count("c1") == 0

    async def test_peek_count_returns_zero_when_absent(self, env: StoreEnv) -> None:
        """A counter never hit reads as 0."""
        assert await env.store.peek_count("c1") == 0

    async def test_peek_count_does_not_change_counter(self, env: StoreEnv) -> None:
        """Peeking returns the value and leaves it as it was."""
        await env.store.count("c1", TTL)
        assert [await env.store.peek_count("c1"), await env.peer.peek_count("c1")] == [1, 1]
        assert await env.store.count("c1", TTL) == 2

    async def test_peek_count_returns_zero_when_expired(self, env: StoreEnv) -> None:
        """An expired counter reads as 0."""
        await env.store.count("c1", 10.0)
        await env.advance(10.5)
        assert await env.store.peek_count("c1") == 0

    async def test_counter_is_independent_of_marks(self, env: StoreEnv) -> None:
        """A counter and a mark with the same key do not interfere."""
        await env.store.count("k", TTL)
        assert await env.store.mark_once("k", TTL) is True
        assert await env.store.peek_count("k") == 1


class TestDelete:
    async def test_delete_clears_counter(self, env: StoreEnv) -> None:
        """A deleted counter reads as 0 and restarts at 1."""
        await env.store.count("c1", TTL)
        await env.peer.delete("c1")
        assert await env.store.peek_count("c1") == 0
        assert await env.store.count("c1", TTL) == 1

    async def test_delete_clears_mark(self, env: StoreEnv) -> None:
        """A deleted mark can be set again at once."""
        await env.store.mark_once("m1", TTL)
        await env.peer.delete("m1")
        assert await env.store.mark_once("m1", TTL) is True

    async def test_delete_clears_every_key_given(self, env: StoreEnv) -> None:
        """Several keys are removed in one call."""
        await env.store.count("a", TTL)
        await env.store.count("b", TTL)
        await env.store.delete("a", "b")
        assert [await env.store.peek_count("a"), await env.store.peek_count("b")] == [0, 0]

    async def test_delete_ignores_absent_keys(self, env: StoreEnv) -> None:
        """Deleting keys that do not exist, or no keys at all, succeeds."""
        await env.store.delete("nope")
        await env.store.delete()

    async def test_delete_leaves_challenges(self, env: StoreEnv) -> None:
        """Delete reaches counters and marks only, not a challenge under the same key."""
        await env.store.put_challenge("k", make_record(), TTL)
        await env.store.delete("k")
        assert await env.store.get_challenge("k") == make_record()


async def wait_in_background(store: SharedState, key: str) -> asyncio.Task[str | None]:
    """Start a wait on ``key`` and give it time to register (and subscribe) before returning."""
    task = asyncio.create_task(store.wait_result(key, 5.0))
    await asyncio.sleep(0.1)
    assert not task.done()
    return task


class TestResults:
    async def test_wait_returns_result_published_before(self, env: StoreEnv) -> None:
        """A result published before the wait began is returned at once."""
        await env.peer.publish_result("t1", "approve", TTL)
        started = time.monotonic()
        assert await env.store.wait_result("t1", 5.0) == "approve"
        assert time.monotonic() - started < WAKE_BOUND_S

    async def test_wait_wakes_when_other_node_publishes(self, env: StoreEnv) -> None:
        """A waiter on one node wakes promptly when another node publishes."""
        task = await wait_in_background(env.store, "t1")
        await env.peer.publish_result("t1", "fraud", TTL)
        published = time.monotonic()
        assert await asyncio.wait_for(task, WAKE_BOUND_S) == "fraud"
        assert time.monotonic() - published < WAKE_BOUND_S

    async def test_wait_wakes_every_waiter_on_key(self, env: StoreEnv) -> None:
        """Every waiter on the key, on either node, gets the result."""
        tasks = [await wait_in_background(node, "t1") for node in (env.store, env.peer)]
        await env.store.publish_result("t1", "approve", TTL)
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAKE_BOUND_S) == ["approve"] * 2

    async def test_wait_ignores_results_for_other_keys(self, env: StoreEnv) -> None:
        """A result under another key does not end the wait."""
        task = await wait_in_background(env.store, "t1")
        await env.peer.publish_result("t2", "approve", TTL)
        await env.peer.publish_result("t1x", "approve", TTL)
        await asyncio.sleep(0.1)
        assert not task.done()
        await env.peer.publish_result("t1", "deny", TTL)
        assert await asyncio.wait_for(task, WAKE_BOUND_S) == "deny"

    async def test_wait_returns_none_when_timed_out(self, env: StoreEnv) -> None:
        """Without a result, the wait ends with None after its timeout."""
        started = time.monotonic()
        assert await env.store.wait_result("t1", 0.1) is None
        assert 0.09 <= time.monotonic() - started < 0.1 + WAKE_BOUND_S

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
        task = await wait_in_background(env.store, "t1")
        await env.store.close()
        assert await asyncio.wait_for(task, WAKE_BOUND_S) is None
