"""MemoryChallengeStore beyond the shared contract: capacity and release of expired entries.

Time is a FakeClock throughout; nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.core.model import Factor, PendingChallenge
from mfa_radius.errors import StoreFull, StoreUnavailable
from tests.support.clock import FakeClock

RECORD = PendingChallenge("alice", "vpn-gw1", Factor.TOTP, created=1.0, expires=2.0)

Write = Callable[[MemoryChallengeStore, str], Awaitable[object]]

WRITES: dict[str, Write] = {
    "put_challenge": lambda s, k: s.put_challenge(k, RECORD, 60.0),
    "mark_once": lambda s, k: s.mark_once(k, 60.0),
    "claim_request": lambda s, k: s.claim_request(k, 60.0),
    "store_reply": lambda s, k: s.store_reply(k, b"reply", 60.0),
    "count": lambda s, k: s.count(k, 60.0),
    "publish_result": lambda s, k: s.publish_result(k, "approve", 60.0),
}


async def fill(store: MemoryChallengeStore, count: int, ttl: float = 60.0) -> None:
    """Store ``count`` challenges, each of its own user (the per-user cap does not apply)."""
    for i in range(count):
        await store.put_challenge(f"fill{i}", replace(RECORD, username=f"user{i}"), ttl)


class TestCapacity:
    @pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
    async def test_raises_store_full_when_full(self, clock: FakeClock, write: Write) -> None:
        """A write of a new key beyond max_entries fails with StoreFull instead of growing."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await fill(store, 10)
        with pytest.raises(StoreFull) as caught:
            await write(store, "one-too-many")
        assert (caught.value.backend, caught.value.detail) == ("memory", "full")
        assert len(store) == 10

    def test_store_full_is_caught_as_store_unavailable(self) -> None:
        """Callers that treat any store failure as best effort (the reply cache) still catch it."""
        assert issubclass(StoreFull, StoreUnavailable)

    async def test_reads_work_when_full(self, clock: FakeClock) -> None:
        """A full store still reads, takes, counts attempts and peeks: only new keys are refused."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await store.count("c1", 60.0)
        await fill(store, 9)
        first = replace(RECORD, username="user0")
        assert await store.get_challenge("fill0") == first
        assert await store.add_attempt("fill0") == 1
        assert await store.peek_count("c1") == 1
        assert await store.take_challenge("fill0") == replace(first, attempts=1)
        assert await store.wait_result("absent", 0.0) is None

    async def test_overwrite_succeeds_when_full(self, clock: FakeClock) -> None:
        """Rewriting a key already held needs no extra room."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await fill(store, 10)
        await store.put_challenge("fill3", RECORD, 60.0)
        assert len(store) == 10

    async def test_put_succeeds_when_full_of_expired_entries(self, clock: FakeClock) -> None:
        """Expired entries give their room to new ones."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await fill(store, 10, ttl=5.0)
        clock.advance(6.0)
        await store.put_challenge("new", RECORD, 60.0)
        assert await store.get_challenge("new") == RECORD

    async def test_put_succeeds_when_expired_entries_sit_behind_live_ones(
        self, clock: FakeClock
    ) -> None:
        """With mixed TTLs, expired entries queued behind a long-lived one still free room."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await store.put_challenge("long", RECORD, 600.0)
        await fill(store, 9, ttl=5.0)
        clock.advance(6.0)
        await store.put_challenge("new", RECORD, 60.0)
        assert len(store) == 2

    async def test_take_frees_room(self, clock: FakeClock) -> None:
        """A taken challenge no longer counts against the capacity."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await fill(store, 10)
        await store.take_challenge("fill0")
        await store.put_challenge("new", RECORD, 60.0)
        assert len(store) == 10

    def test_rejects_capacity_below_one(self, clock: FakeClock) -> None:
        """A store that could hold nothing is a configuration error."""
        with pytest.raises(ValueError, match="max_entries"):
            MemoryChallengeStore(clock, max_entries=0)

    def test_rejects_per_user_cap_below_one(self, clock: FakeClock) -> None:
        """A per-user cap that would refuse every challenge is a configuration error."""
        with pytest.raises(ValueError, match="max_challenges_per_user"):
            MemoryChallengeStore(clock, max_challenges_per_user=0)


class TestPerUserCap:
    async def test_user_at_cap_can_still_challenge_when_store_is_full(
        self, clock: FakeClock
    ) -> None:
        """At the global cap, a user at their own cap still gets a challenge: their oldest goes."""
        store = MemoryChallengeStore(clock, max_entries=10, max_challenges_per_user=2)
        await store.put_challenge("a1", RECORD, 60.0)
        await store.put_challenge("a2", RECORD, 60.0)
        await fill(store, 8)
        await store.put_challenge("a3", RECORD, 60.0)
        assert (await store.get_challenge("a1"), await store.get_challenge("a3")) == (None, RECORD)
        assert len(store) == 10

    async def test_index_forgets_users_whose_challenges_are_gone(self, clock: FakeClock) -> None:
        """Taken, expired and swept challenges leave nothing behind in the per-user index."""
        store = MemoryChallengeStore(clock, max_challenges_per_user=2)
        await store.put_challenge("taken", RECORD, 60.0)
        await store.take_challenge("taken")
        await fill(store, 3, ttl=5.0)
        clock.advance(6.0)
        await store.put_challenge("read", replace(RECORD, username="reader"), 1.0)
        clock.advance(2.0)
        await store.get_challenge("read")
        await store.mark_once("sweeps", 60.0)
        assert store._user_keys == {}  # the index itself is what is under test

    async def test_new_challenge_under_a_dead_key_goes_to_the_back(self, clock: FakeClock) -> None:
        """Rewriting an expired challenge's key is a new challenge, so it is not the oldest."""
        store = MemoryChallengeStore(clock, max_challenges_per_user=2)
        await store.put_challenge("k1", RECORD, 5.0)
        await store.put_challenge("k2", RECORD, 60.0)
        clock.advance(6.0)
        await store.put_challenge("k1", RECORD, 60.0)
        await store.put_challenge("k3", RECORD, 60.0)
        assert [await store.get_challenge(k) is not None for k in ("k1", "k2", "k3")] == [
            True,
            False,
            True,
        ]


class TestRelease:
    async def test_writes_release_expired_entries(self, clock: FakeClock) -> None:
        """Expired entries are dropped by later writes, without anyone reading them."""
        store = MemoryChallengeStore(clock)
        await fill(store, 5, ttl=5.0)
        await store.mark_once("m1", 5.0)
        await store.claim_request("r1", 5.0)
        clock.advance(6.0)
        await store.put_challenge("new", RECORD, 60.0)
        assert len(store) == 1

    async def test_writes_release_expired_counters_and_results(self, clock: FakeClock) -> None:
        """Expired counters and results are dropped by later writes like other entries."""
        store = MemoryChallengeStore(clock)
        await store.count("c1", 5.0)
        await store.publish_result("t1", "approve", 5.0)
        clock.advance(6.0)
        await store.mark_once("m1", 60.0)
        assert len(store) == 1

    async def test_count_hit_keeps_room_when_full(self, clock: FakeClock) -> None:
        """Counting on a live counter needs no extra room."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await store.count("c1", 60.0)
        await fill(store, 9)
        assert await store.count("c1", 60.0) == 2

    async def test_uncount_works_when_full_and_adds_no_entry(self, clock: FakeClock) -> None:
        """Giving a hit back needs no room, and an absent counter is not created."""
        store = MemoryChallengeStore(clock, max_entries=10)
        await store.count("c1", 60.0)
        await fill(store, 9)
        assert [await store.uncount("c1"), await store.uncount("absent")] == [0, 0]
        assert len(store) == 10

    async def test_uncount_releases_expired_counter(self, clock: FakeClock) -> None:
        """Giving back on an expired counter drops it."""
        store = MemoryChallengeStore(clock)
        await store.count("c1", 5.0)
        clock.advance(6.0)
        assert await store.uncount("c1") == 0
        assert len(store) == 0

    async def test_wait_returns_stored_result_when_timeout_zero(self, clock: FakeClock) -> None:
        """A zero timeout still returns a result that is already there."""
        store = MemoryChallengeStore(clock)
        await store.publish_result("t1", "approve", 60.0)
        assert await store.wait_result("t1", 0.0) == "approve"

    async def test_wait_returns_none_at_once_when_timeout_zero(self, clock: FakeClock) -> None:
        """A zero timeout without a result returns None without waiting."""
        store = MemoryChallengeStore(clock)
        assert await store.wait_result("t1", 0.0) is None

    async def test_read_releases_expired_entry(self, clock: FakeClock) -> None:
        """Reading an expired challenge drops it."""
        store = MemoryChallengeStore(clock)
        await store.put_challenge("s1", RECORD, 5.0)
        clock.advance(6.0)
        await store.get_challenge("s1")
        assert len(store) == 0

    async def test_rewrite_moves_entry_behind_older_ones(self, clock: FakeClock) -> None:
        """A rewritten key with a fresh TTL does not hold back the release of older entries."""
        store = MemoryChallengeStore(clock)
        await store.put_challenge("first", RECORD, 5.0)
        await store.put_challenge("second", RECORD, 5.0)
        await store.put_challenge("first", RECORD, 60.0)
        clock.advance(6.0)
        await store.mark_once("m1", 60.0)
        assert (len(store), await store.get_challenge("first")) == (2, RECORD)

    async def test_close_drops_every_entry(self, clock: FakeClock) -> None:
        """Closing the store releases everything it held."""
        store = MemoryChallengeStore(clock)
        await fill(store, 3)
        await store.close()
        assert len(store) == 0


class TestTtl:
    async def test_zero_ttl_expires_at_once(self, clock: FakeClock) -> None:
        """A TTL of zero is raised to the 1 ms floor, so the entry is gone a moment later."""
        store = MemoryChallengeStore(clock)
        await store.put_challenge("s1", RECORD, 0.0)
        clock.advance(0.001)
        assert await store.get_challenge("s1") is None

    async def test_rejects_non_finite_ttl(self, clock: FakeClock) -> None:
        """An infinite TTL is a programming error, not an entry that never expires."""
        store = MemoryChallengeStore(clock)
        with pytest.raises(ValueError, match="finite"):
            await store.mark_once("m1", float("inf"))
