"""The Marks contract (ports.Marks), run against every store adapter.

One-time marks, windowed counters (hit, given back, read) and their deletion. Each test runs
on MemoryChallengeStore and on RedisChallengeStore; see conftest.py for the environment (a
second node, and TTLs that pass without sleeping).
"""

from __future__ import annotations

import asyncio

from tests.adapters.contract.conftest import TTL, StoreEnv, make_record


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


class TestUncount:
    async def test_uncount_takes_one_back(self, env: StoreEnv) -> None:
        """A counter hit three times reads 2 after one uncount, on either node."""
        for _ in range(3):
            await env.store.count("c1", TTL)
        assert await env.peer.uncount("c1") == 2
        assert await env.store.peek_count("c1") == 2

    async def test_uncount_never_goes_below_zero(self, env: StoreEnv) -> None:
        """More uncounts than hits leave the counter at 0, and the next hit makes it 1."""
        await env.store.count("c1", TTL)
        assert [await env.store.uncount("c1") for _ in range(3)] == [0, 0, 0]
        assert await env.store.peek_count("c1") == 0
        assert await env.store.count("c1", TTL) == 1

    async def test_uncount_returns_zero_when_absent(self, env: StoreEnv) -> None:
        """An uncount of a counter never hit reads 0; the next hit is the first."""
        assert await env.store.uncount("c1") == 0
        assert await env.store.peek_count("c1") == 0
        assert await env.store.count("c1", TTL) == 1

    async def test_uncount_returns_zero_when_expired(self, env: StoreEnv) -> None:
        """An expired counter is not brought back by an uncount."""
        await env.store.count("c1", 10.0)
        await env.store.count("c1", 10.0)
        await env.advance(10.5)
        assert await env.store.uncount("c1") == 0
        assert await env.store.count("c1", 10.0) == 1

    async def test_uncount_keeps_the_window_of_the_first_hit(self, env: StoreEnv) -> None:
        """Giving a hit back does not extend the window the first hit opened."""
        await env.store.count("c1", 10.0)
        await env.store.count("c1", 10.0)
        await env.advance(6.0)
        assert await env.store.uncount("c1") == 1
        await env.advance(4.5)
        assert await env.store.peek_count("c1") == 0

    async def test_uncount_loses_no_concurrent_hit_or_give_back(self, env: StoreEnv) -> None:
        """Concurrent hits and give-backs on two nodes add up exactly."""
        for _ in range(10):
            await env.store.count("c1", TTL)
        await asyncio.gather(
            *(node.uncount("c1") for node in (env.store, env.peer) * 3),
            *(node.count("c1", TTL) for node in (env.store, env.peer) * 2),
        )
        assert await env.store.peek_count("c1") == 10 - 6 + 4

    async def test_uncount_stops_at_zero_under_concurrency(self, env: StoreEnv) -> None:
        """Many concurrent uncounts of a small counter never take it below zero."""
        for _ in range(3):
            await env.store.count("c1", TTL)
        values = await asyncio.gather(*(node.uncount("c1") for node in (env.store, env.peer) * 5))
        assert sorted(values) == [0] * 8 + [1, 2]
        assert await env.store.peek_count("c1") == 0

    async def test_uncount_leaves_marks_and_challenges(self, env: StoreEnv) -> None:
        """Uncount reaches counters only, not a mark or a challenge under the same key."""
        await env.store.put_challenge("k", make_record(), TTL)
        await env.store.mark_once("k", TTL)
        assert await env.store.uncount("k") == 0
        assert await env.store.mark_once("k", TTL) is False
        assert await env.store.get_challenge("k") == make_record()


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
