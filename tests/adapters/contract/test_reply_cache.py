"""The ReplyCache contract (ports.ReplyCache), run against every store adapter.

RFC 5080 §2.2.2 duplicate detection: claims, stored replies and released claims. Each test runs
on MemoryChallengeStore and on RedisChallengeStore; see conftest.py for the environment (a
second node, and TTLs that pass without sleeping).
"""

from __future__ import annotations

import asyncio

import pytest

from mfa_radius.ports import RequestClaim, SharedState
from tests.adapters.contract.conftest import TTL, StoreEnv


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


NODES = pytest.mark.parametrize("node", ["store", "peer"], ids=["same-node", "other-node"])
"""Run a test with the release (or the next claim) on the claiming node and on the other."""


def on(env: StoreEnv, node: str) -> SharedState:
    """The node named ``node`` ("store" or "peer") of ``env``."""
    return env.store if node == "store" else env.peer


class TestReleaseRequest:
    @NODES
    async def test_claim_request_makes_next_caller_owner_when_released(
        self, env: StoreEnv, node: str
    ) -> None:
        """After a release, the next claim on either node owns the request, and holds it."""
        await env.store.claim_request("r1", TTL)
        await env.store.release_request("r1")
        assert await on(env, node).claim_request("r1", TTL) == RequestClaim(owner=True)
        assert await env.peer.claim_request("r1", TTL) == RequestClaim(owner=False, reply=None)

    @NODES
    async def test_release_request_keeps_stored_reply(self, env: StoreEnv, node: str) -> None:
        """A release after store_reply, from either node, leaves the reply for duplicates."""
        reply = b"\x02\x2a\x00\x14" + bytes(range(16))
        await env.store.claim_request("r1", TTL)
        await env.store.store_reply("r1", reply, TTL)
        await on(env, node).release_request("r1")
        assert await env.peer.claim_request("r1", TTL) == RequestClaim(owner=False, reply=reply)
        assert await env.store.claim_request("r1", TTL) == RequestClaim(owner=False, reply=reply)

    async def test_release_request_ignores_unknown_key(self, env: StoreEnv) -> None:
        """Releasing a request never claimed succeeds and touches no other claim."""
        await env.store.claim_request("r1", TTL)
        await env.store.release_request("nope")
        await env.peer.release_request("r1x")
        assert await env.peer.claim_request("r1", TTL) == RequestClaim(owner=False, reply=None)
        assert await env.store.claim_request("nope", TTL) == RequestClaim(owner=True)

    async def test_claim_request_has_one_owner_when_concurrent_after_release(
        self, env: StoreEnv
    ) -> None:
        """Of many concurrent claims on two nodes after a release, exactly one owns the request."""
        await env.store.claim_request("r1", TTL)
        await env.store.release_request("r1")
        claims = await asyncio.gather(
            *(node.claim_request("r1", TTL) for node in (env.store, env.peer) * 5)
        )
        assert [c.owner for c in claims].count(True) == 1
        assert [c for c in claims if not c.owner] == [RequestClaim(owner=False, reply=None)] * 9
