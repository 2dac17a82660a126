"""The life cycle the store adapters add to the four store ports (ports.SharedState).

Each test runs on MemoryChallengeStore and on RedisChallengeStore; see conftest.py.
"""

from __future__ import annotations

from tests.adapters.contract.conftest import StoreEnv


class TestLifecycle:
    async def test_ping_succeeds_when_store_is_up(self, env: StoreEnv) -> None:
        """Ping returns without error on a working store."""
        await env.store.ping()
