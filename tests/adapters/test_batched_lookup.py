"""Batched user lookups against a real SQLite enrolment database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.batched_lookup import BatchedUserLookup
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.core.model import User
from mfa_radius.errors import EnrolmentUnavailable


class CountingSource:
    """Passes find_users through to the real store and records each batch."""

    def __init__(self, store: SqlEnrolmentStore) -> None:
        self.store = store
        self.batches: list[list[str]] = []

    async def find_users(self, usernames: list[str]) -> dict[str, User]:
        self.batches.append(list(usernames))
        return await self.store.find_users(usernames)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlEnrolmentStore]:
    keyring = Keyring.from_text(Keyring.generate_line("k1"), source="test")
    db = await SqlEnrolmentStore.open(
        f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", keyring, create=True
    )
    for i in range(40):
        await db.add_user(f"user{i}")
        await db.add_totp(f"user{i}", bytes([i]) * 20)
    yield db
    await db.close()


async def test_concurrent_lookups_share_queries(store: SqlEnrolmentStore) -> None:
    """Forty lookups at once are answered correctly by far fewer queries."""
    source = CountingSource(store)
    lookup = BatchedUserLookup(source, max_batch=256, max_concurrent=2)
    users = await asyncio.gather(*(lookup.find_user(f"user{i}") for i in range(40)))
    assert [u.username if u else None for u in users] == [f"user{i}" for i in range(40)]
    assert all(u is not None and u.tokens[0].secret == bytes([i]) * 20 for i, u in enumerate(users))
    assert len(source.batches) <= 3


async def test_single_lookup_runs_at_once(store: SqlEnrolmentStore) -> None:
    """At low load a lookup is a batch of one: nobody waits for company."""
    source = CountingSource(store)
    lookup = BatchedUserLookup(source)
    user = await lookup.find_user("user3")
    assert user is not None
    assert source.batches == [["user3"]]


async def test_unknown_user_is_none(store: SqlEnrolmentStore) -> None:
    """A name that is not enrolled comes back as None, alongside found ones."""
    lookup = BatchedUserLookup(CountingSource(store))
    found, missing = await asyncio.gather(lookup.find_user("user1"), lookup.find_user("nobody"))
    assert found is not None
    assert missing is None


async def test_batches_respect_max_batch(store: SqlEnrolmentStore) -> None:
    """No query carries more names than max_batch."""
    source = CountingSource(store)
    lookup = BatchedUserLookup(source, max_batch=8, max_concurrent=1)
    await asyncio.gather(*(lookup.find_user(f"user{i}") for i in range(40)))
    assert max(len(b) for b in source.batches) <= 8
    assert sum(len(b) for b in source.batches) == 40


async def test_duplicate_names_in_one_batch_all_get_the_user(store: SqlEnrolmentStore) -> None:
    """Two logins of the same user at once both get their answer."""
    lookup = BatchedUserLookup(CountingSource(store))
    a, b = await asyncio.gather(lookup.find_user("user5"), lookup.find_user("user5"))
    assert a is not None
    assert b is not None


async def test_database_failure_reaches_every_waiter(
    store: SqlEnrolmentStore, tmp_path: Path
) -> None:
    """When the query fails, every caller in the batch gets EnrolmentUnavailable."""
    lookup = BatchedUserLookup(CountingSource(store))
    await store.close()
    # the next connection opens an empty database: no tables
    await asyncio.to_thread(_remove_database, tmp_path)
    results = await asyncio.gather(
        *(lookup.find_user(f"user{i}") for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, EnrolmentUnavailable) for r in results), results


def _remove_database(directory: Path) -> None:
    for path in directory.glob("e.db*"):
        path.unlink()


async def test_cancelled_caller_does_not_disturb_others(store: SqlEnrolmentStore) -> None:
    """A caller that gives up (its deadline passed) leaves the batch's other callers served."""
    lookup = BatchedUserLookup(CountingSource(store))
    doomed = asyncio.ensure_future(lookup.find_user("user1"))
    kept = asyncio.ensure_future(lookup.find_user("user2"))
    doomed.cancel()
    user = await kept
    assert user is not None
    assert doomed.cancelled()
