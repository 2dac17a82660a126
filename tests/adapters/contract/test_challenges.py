"""The Challenges contract (ports.Challenges), run against every store adapter.

Each test runs on MemoryChallengeStore and on RedisChallengeStore; see conftest.py for the
environment (a second node, and TTLs that pass without sleeping).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from mfa_radius.core.model import Factor, PendingChallenge
from tests.adapters.contract.conftest import TTL, StoreEnv, make_record


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


CAP = 5
"""The stores' default per-user cap (``max_challenges_per_user``)."""


async def present(env: StoreEnv, *keys: str) -> list[str]:
    """The keys among ``keys`` whose challenge can still be read."""
    return [key for key in keys if await env.store.get_challenge(key) is not None]


class TestPerUserCap:
    async def test_cap_holds_for_one_user(self, env: StoreEnv) -> None:
        """A user never holds more than the cap of pending challenges."""
        for i in range(CAP + 3):
            await env.store.put_challenge(f"s{i}", make_record(), TTL)
        assert len(await present(env, *(f"s{i}" for i in range(CAP + 3)))) == CAP

    async def test_oldest_goes_when_user_is_at_cap(self, env: StoreEnv) -> None:
        """One more challenge for a user at the cap removes that user's oldest, and only it."""
        keys = [f"s{i}" for i in range(CAP + 1)]
        for key in keys:
            await env.store.put_challenge(key, make_record(), TTL)
        assert await present(env, *keys) == keys[1:]

    async def test_other_users_are_untouched(self, env: StoreEnv) -> None:
        """One user going past the cap removes none of another user's challenges."""
        bob = replace(make_record(), username="bob")
        await env.store.put_challenge("bob1", bob, TTL)
        for i in range(CAP * 2):
            await env.store.put_challenge(f"s{i}", make_record(), TTL)
        assert await env.store.get_challenge("bob1") == bob

    async def test_taken_challenge_frees_its_slot(self, env: StoreEnv) -> None:
        """A taken challenge no longer counts: the next one removes nothing."""
        keys = [f"s{i}" for i in range(CAP)]
        for key in keys:
            await env.store.put_challenge(key, make_record(), TTL)
        await env.store.take_challenge("s2")
        await env.store.put_challenge("new", make_record(), TTL)
        assert await present(env, *keys, "new") == ["s0", "s1", "s3", "s4", "new"]

    async def test_expired_challenge_frees_its_slot(self, env: StoreEnv) -> None:
        """An expired challenge no longer counts: the next one removes no live challenge."""
        await env.store.put_challenge("short", make_record(), 10.0)
        keys = [f"s{i}" for i in range(CAP - 1)]
        for key in keys:
            await env.store.put_challenge(key, make_record(), TTL)
        await env.advance(10.5)
        await env.store.put_challenge("new", make_record(), TTL)
        assert await present(env, *keys, "new") == [*keys, "new"]

    async def test_overwrite_keeps_place_and_removes_nothing(self, env: StoreEnv) -> None:
        """Rewriting a live challenge is not a new one: it stays the oldest and evicts nothing."""
        keys = [f"s{i}" for i in range(CAP)]
        for key in keys:
            await env.store.put_challenge(key, make_record(), TTL)
        await env.store.put_challenge("s0", make_record(attempts=1), TTL)
        assert await present(env, *keys) == keys
        await env.store.put_challenge("new", make_record(), TTL)
        assert await present(env, *keys, "new") == [*keys[1:], "new"]

    async def test_cap_holds_across_nodes(self, env: StoreEnv) -> None:
        """Challenges stored through two nodes count against the same per-user cap."""
        keys = [f"s{i}" for i in range(CAP + 1)]
        for index, key in enumerate(keys):
            node = env.store if index % 2 else env.peer
            await node.put_challenge(key, make_record(), TTL)
        assert await present(env, *keys) == keys[1:]
