"""The UserLookup contract (ports.UserLookup), run against every lookup adapter.

Each test runs on SqlEnrolmentStore (SQLite in the test's directory, secrets encrypted with a
throw-away Keyring) and on BatchedUserLookup over that store. Users are enrolled through the
store's admin methods; only the lookup is under test here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.batched_lookup import BatchedUserLookup
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.ports import UserLookup

SECRET = b"12345678901234567890"
SECRET_2 = b"abcdefghijabcdefghijabcdefghij12"


@dataclass(frozen=True)
class LookupEnv:
    """A lookup under test and the enrolment store it reads from.

    Attributes:
        lookup: the adapter under test.
        enrolments: the same database, to enrol users through.
    """

    lookup: UserLookup
    enrolments: SqlEnrolmentStore


@pytest.fixture(params=["sql", "batched"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LookupEnv]:
    """A lookup of each adapter over an empty, migrated enrolment database."""
    keyring = Keyring.from_text(Keyring.generate_line("k1"), source="test")
    store = await SqlEnrolmentStore.open(
        f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", keyring, create=True
    )
    lookup: UserLookup = store if request.param == "sql" else BatchedUserLookup(store)
    yield LookupEnv(lookup=lookup, enrolments=store)
    await store.close()


class TestFindUser:
    async def test_find_user_returns_none_when_unknown(self, env: LookupEnv) -> None:
        """A name that is not enrolled gives None."""
        await env.enrolments.add_user("alice")
        assert await env.lookup.find_user("bob") is None

    async def test_find_user_returns_none_when_database_empty(self, env: LookupEnv) -> None:
        """A lookup in a database without users gives None."""
        assert await env.lookup.find_user("alice") is None

    async def test_find_user_returns_enrolled_user(self, env: LookupEnv) -> None:
        """A known user comes back with the details they were enrolled with."""
        added = await env.enrolments.add_user(
            "alice",
            display_name="Alice Liddell",
            email="alice@example.org",
            phone="+41790000001",
            language="de-DE",
        )
        assert await env.lookup.find_user("alice") == added

    async def test_find_user_returns_tokens_decrypted_with_parameters(self, env: LookupEnv) -> None:
        """Every token comes back with its secret decrypted and its own TOTP parameters."""
        await env.enrolments.add_user("alice")
        app = await env.enrolments.add_totp("alice", SECRET)
        fob = await env.enrolments.add_totp(
            "alice", SECRET_2, digits=8, time_step=60, algorithm="sha256", serial="HW-0042"
        )
        user = await env.lookup.find_user("alice")
        assert user is not None
        by_id = {token.token_id: token for token in user.tokens}
        assert by_id == {app.token_id: app, fob.token_id: fob}
        assert (by_id[app.token_id].secret, by_id[fob.token_id].secret) == (SECRET, SECRET_2)
        found = by_id[fob.token_id]
        assert (found.digits, found.time_step, found.algorithm, found.serial) == (
            8,
            60,
            "sha256",
            "HW-0042",
        )

    async def test_find_user_returns_no_tokens_when_none_enrolled(self, env: LookupEnv) -> None:
        """A user without a token comes back with an empty token tuple."""
        await env.enrolments.add_user("alice")
        user = await env.lookup.find_user("alice")
        assert user is not None
        assert user.tokens == ()

    async def test_find_user_gives_each_concurrent_caller_their_own_user(
        self, env: LookupEnv
    ) -> None:
        """Concurrent lookups of several users, unknown ones among them, each get their own."""
        for i in range(8):
            await env.enrolments.add_user(f"user{i}", phone=f"+4179000000{i}")
            await env.enrolments.add_totp(f"user{i}", bytes([i + 1]) * 20)
        names = [f"user{i}" for i in range(8)] + ["nobody", "user3", "user0"]
        found = await asyncio.gather(*(env.lookup.find_user(name) for name in names))
        assert [u.username if u else None for u in found] == [*names[:8], None, "user3", "user0"]
        for name, user in zip(names, found, strict=True):
            if user is not None:
                i = int(name.removeprefix("user"))
                assert user.phone == f"+4179000000{i}"
                assert [t.secret for t in user.tokens] == [bytes([i + 1]) * 20]
