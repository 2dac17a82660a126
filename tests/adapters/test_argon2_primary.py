from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.argon2_primary import Argon2PrimaryAuthenticator, hash_password
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.core.model import PrimaryAccept, PrimaryReject, RejectReason
from mfa_radius.errors import PrimaryUnavailable
from tests.support.primaries import CountingExecutor, attempt

PASSWORD = "correct horse battery staple"
KEYS = f"k1 {base64.b64encode(bytes(range(32))).decode()}"


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'enrolments.db'}"


@pytest.fixture
async def store(url: str, alice_hash: str) -> AsyncIterator[SqlEnrolmentStore]:
    opened = await SqlEnrolmentStore.open(url, Keyring.from_text(KEYS, source="keys"), create=True)
    await opened.add_user("alice")
    await opened.set_password_hash("alice", alice_hash)
    await opened.add_user("bob")  # enrolled, but without a local password
    yield opened
    await opened.close()


@pytest.fixture
def executor() -> Iterator[CountingExecutor]:
    pool = CountingExecutor()
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def primary(store: SqlEnrolmentStore, executor: CountingExecutor) -> Argon2PrimaryAuthenticator:
    return Argon2PrimaryAuthenticator(store, executor=executor)


class TestVerify:
    async def test_verify_accepts_right_password(self, primary: Argon2PrimaryAuthenticator) -> None:
        """The password the hash was made from is accepted."""
        assert await primary.verify(attempt("alice"), PASSWORD.encode()) == PrimaryAccept()

    async def test_verify_rejects_wrong_password_as_bad_password(
        self, primary: Argon2PrimaryAuthenticator
    ) -> None:
        """Any other password is a bad_password reject."""
        result = await primary.verify(attempt("alice"), b"Correct horse battery staple")
        assert result == PrimaryReject(RejectReason.BAD_PASSWORD)

    async def test_verify_rejects_unknown_user_after_one_dummy_verify(
        self, primary: Argon2PrimaryAuthenticator, executor: CountingExecutor
    ) -> None:
        """An unknown user is rejected as unknown_user after the same argon2 work as a known one."""
        result = await primary.verify(attempt("nobody"), PASSWORD.encode())
        assert result == PrimaryReject(RejectReason.UNKNOWN_USER)
        assert executor.jobs == 1

    async def test_verify_rejects_user_without_password_as_unknown_user(
        self, primary: Argon2PrimaryAuthenticator, executor: CountingExecutor
    ) -> None:
        """A user with no local password is rejected like an unknown user, after one verify."""
        result = await primary.verify(attempt("bob"), PASSWORD.encode())
        assert result == PrimaryReject(RejectReason.UNKNOWN_USER)
        assert executor.jobs == 1

    async def test_verify_rejects_empty_password_without_hashing(
        self, primary: Argon2PrimaryAuthenticator, executor: CountingExecutor
    ) -> None:
        """An empty password is missing_password and costs no argon2 work."""
        result = await primary.verify(attempt("alice"), b"")
        assert result == PrimaryReject(RejectReason.MISSING_PASSWORD)
        assert executor.jobs == 0

    async def test_verify_raises_primary_unavailable_when_hash_not_argon2(
        self, primary: Argon2PrimaryAuthenticator, store: SqlEnrolmentStore
    ) -> None:
        """A stored value that is not an argon2 hash is a backend failure, not a reject."""
        await store.set_password_hash("alice", "$2b$12$notanargon2hashatall")
        with pytest.raises(PrimaryUnavailable, match="argon2"):
            await primary.verify(attempt("alice"), PASSWORD.encode())

    async def test_verify_raises_primary_unavailable_when_database_broken(
        self, primary: Argon2PrimaryAuthenticator, url: str
    ) -> None:
        """An unreadable enrolment database is a PrimaryUnavailable naming that backend."""
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP TABLE passwords"))
        finally:
            await engine.dispose()
        with pytest.raises(PrimaryUnavailable) as caught:
            await primary.verify(attempt("alice"), PASSWORD.encode())
        assert caught.value.backend == "enrolment-db"

    async def test_verify_uses_private_pool_when_no_executor_given(
        self, store: SqlEnrolmentStore
    ) -> None:
        """Without an executor the authenticator runs argon2 in its own pool, closed by close()."""
        own = Argon2PrimaryAuthenticator(store)
        try:
            assert await own.verify(attempt("alice"), PASSWORD.encode()) == PrimaryAccept()
        finally:
            own.close()


class TestHashPassword:
    def test_hash_password_produces_argon2id_hash(self, alice_hash: str) -> None:
        """New hashes are argon2id with RFC 9106's low-memory parameters."""
        assert alice_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")

    def test_hash_password_salts_each_hash(self, alice_hash: str) -> None:
        """Hashing the same password twice gives different hashes (random salt)."""
        assert hash_password(PASSWORD) != alice_hash

    def test_hash_password_rejects_empty_password(self) -> None:
        """An empty password cannot be set."""
        with pytest.raises(ValueError, match="empty"):
            hash_password("")
