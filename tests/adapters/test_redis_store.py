"""RedisChallengeStore beyond the shared contract: key layout, TTLs, outages, credentials.

Everything runs against real redis-server processes on loopback. Outages are produced for
real: the private server is stopped, frozen with SIGSTOP, or restarted on the same port.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.core.model import Factor, PendingChallenge
from mfa_radius.errors import StoreUnavailable
from mfa_radius.ports import RequestClaim
from tests.support.ports import free_tcp_port
from tests.support.redis_server import RedisServer

HANG_GUARD_S = 2.0
"""Upper bound for a failing command: socket timeout 0.5 s plus one reconnect, with margin."""

PASSWORD = "s3cret-Pa55word-for-tests"

RECORD = PendingChallenge(
    username="alice",
    client="vpn-gw1",
    factor=Factor.TOTP,
    created=1_700_000_000.0,
    expires=1_700_000_060.0,
    reply_attributes=((25, b"class"),),
)

Operation = Callable[[RedisChallengeStore], Awaitable[object]]

OPERATIONS: dict[str, Operation] = {
    "put_challenge": lambda s: s.put_challenge("s1", RECORD, 60.0),
    "get_challenge": lambda s: s.get_challenge("s1"),
    "take_challenge": lambda s: s.take_challenge("s1"),
    "add_attempt": lambda s: s.add_attempt("s1"),
    "mark_once": lambda s: s.mark_once("m1", 60.0),
    "claim_request": lambda s: s.claim_request("r1", 60.0),
    "store_reply": lambda s: s.store_reply("r1", b"reply", 60.0),
    "ping": lambda s: s.ping(),
}


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client on the flushed shared database, to look at what the store wrote."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisChallengeStore]:
    """A store on the flushed shared database."""
    challenge_store = RedisChallengeStore(url=redis_url)
    yield challenge_store
    await challenge_store.close()


@pytest.fixture
async def private_store(private_redis: RedisServer) -> AsyncIterator[RedisChallengeStore]:
    """A store on this test's own server, with the default (short) timeouts."""
    challenge_store = RedisChallengeStore(host=private_redis.host, port=private_redis.port)
    yield challenge_store
    await challenge_store.close()


async def run_flow(store: RedisChallengeStore) -> None:
    """Write every kind of key the store knows, as one login with a retransmit would."""
    await store.claim_request("r1", 30.0)
    await store.put_challenge("s1", RECORD, 120.0)
    await store.add_attempt("s1")
    await store.mark_once("m1", 90.0)
    await store.store_reply("r1", b"reply", 30.0)
    await store.put_challenge("s2", RECORD, 120.0)
    await store.take_challenge("s2")


async def assert_unavailable(operation: Awaitable[object]) -> StoreUnavailable:
    """Await ``operation``, expecting StoreUnavailable within the hang guard."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await operation
    assert time.monotonic() - started < HANG_GUARD_S
    assert caught.value.backend == "redis"
    return caught.value


def error_text(exc: BaseException) -> str:
    """Everything a log line could render: message, repr and the chained traceback."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


class TestKeys:
    async def test_every_key_has_ttl_after_flow(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """No key written during a login flow lives without an expiry."""
        await run_flow(store)
        ttls = [await admin.pttl(key) async for key in admin.scan_iter(match="*")]
        assert len(ttls) == 3
        assert all(ttl > 0 for ttl in ttls)

    async def test_keys_use_configured_prefix(self, redis_url: str, admin: Redis) -> None:
        """Every key starts with the prefix, followed by its namespace."""
        store = RedisChallengeStore(url=redis_url, key_prefix="site7:")
        try:
            await run_flow(store)
        finally:
            await store.close()
        keys = {key async for key in admin.scan_iter(match="*")}
        assert keys == {b"site7:chal:s1", b"site7:once:m1", b"site7:req:r1"}

    async def test_ttl_is_set_in_milliseconds(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A fractional TTL in seconds becomes the matching PX, not a whole-second EX."""
        await store.put_challenge("s1", RECORD, 1.25)
        assert 1000 < await admin.pttl("mfa:chal:s1") <= 1250

    async def test_challenge_expires_in_real_time(self, store: RedisChallengeStore) -> None:
        """A challenge written with a 50 ms TTL is gone after a short real wait."""
        await store.put_challenge("s1", RECORD, 0.05)
        await asyncio.sleep(0.15)
        assert await store.get_challenge("s1") is None

    async def test_rejects_non_finite_ttl(self, store: RedisChallengeStore) -> None:
        """An infinite TTL is a programming error, not a key without expiry."""
        with pytest.raises(ValueError, match="finite"):
            await store.mark_once("m1", float("inf"))


CORRUPT_VALUES = [
    pytest.param(b"not json at all", id="not-json"),
    pytest.param(b"\xff\xfe\x00", id="binary"),
    pytest.param(b"[1, 2, 3]", id="json-list"),
]
"""Values that are not a stored challenge at all."""

INCOMPLETE_VALUES = [pytest.param(b'{"n":1,"u":"alice"}', id="fields-missing")]
"""JSON of the right shape with fields missing. The attempt script only checks the leading
count, so add_attempt counts on it; reads still give None, so the login fails closed."""


class TestCorruptRecords:
    @pytest.mark.parametrize("value", CORRUPT_VALUES + INCOMPLETE_VALUES)
    async def test_get_returns_none_when_record_corrupt(
        self, store: RedisChallengeStore, admin: Redis, value: bytes
    ) -> None:
        """An unreadable challenge reads as absent instead of failing the request."""
        await admin.set("mfa:chal:s1", value, px=60_000)
        assert await store.get_challenge("s1") is None

    @pytest.mark.parametrize("value", CORRUPT_VALUES + INCOMPLETE_VALUES)
    async def test_take_returns_none_when_record_corrupt(
        self, store: RedisChallengeStore, admin: Redis, value: bytes
    ) -> None:
        """Taking an unreadable challenge gives None and removes it."""
        await admin.set("mfa:chal:s1", value, px=60_000)
        assert await store.take_challenge("s1") is None
        assert await admin.exists("mfa:chal:s1") == 0

    @pytest.mark.parametrize("value", CORRUPT_VALUES)
    async def test_add_attempt_returns_none_when_record_corrupt(
        self, store: RedisChallengeStore, admin: Redis, value: bytes
    ) -> None:
        """Counting on an unreadable challenge gives None, as for a missing one."""
        await admin.set("mfa:chal:s1", value, px=60_000)
        assert await store.add_attempt("s1") is None


class TestOutages:
    @pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
    async def test_raises_store_unavailable_when_server_stopped(
        self,
        private_redis: RedisServer,
        private_store: RedisChallengeStore,
        operation: Operation,
    ) -> None:
        """Every operation on a stopped server raises StoreUnavailable, promptly."""
        await private_store.ping()
        private_redis.stop()
        await assert_unavailable(operation(private_store))

    async def test_raises_store_unavailable_when_server_hung(
        self, private_redis: RedisServer, private_store: RedisChallengeStore
    ) -> None:
        """A server that accepts but never answers fails the command after the socket timeout."""
        await private_store.put_challenge("s1", RECORD, 60.0)
        private_redis.pause()
        try:
            await assert_unavailable(private_store.take_challenge("s1"))
        finally:
            private_redis.resume()

    async def test_raises_store_unavailable_when_nothing_listens(self) -> None:
        """A store pointed at a closed port fails with StoreUnavailable, not a socket error."""
        store = RedisChallengeStore(port=free_tcp_port())
        try:
            await assert_unavailable(store.ping())
        finally:
            await store.close()

    async def test_works_again_when_server_restarted(
        self, private_redis: RedisServer, private_store: RedisChallengeStore
    ) -> None:
        """After a restart on the same port, the same instance runs every operation again."""
        await private_store.put_challenge("s1", RECORD, 60.0)
        await private_store.add_attempt("s1")
        private_redis.restart()
        await private_store.put_challenge("s1", RECORD, 60.0)
        assert await private_store.add_attempt("s1") == 1
        assert await private_store.claim_request("r1", 60.0) == RequestClaim(owner=True)

    async def test_works_again_when_server_returns_after_outage(
        self, private_redis: RedisServer, private_store: RedisChallengeStore
    ) -> None:
        """Commands fail while the server is down and succeed once it is back."""
        await private_store.ping()
        private_redis.stop()
        await assert_unavailable(private_store.ping())
        private_redis.start()
        assert await private_store.mark_once("m1", 60.0) is True

    async def test_recovers_when_hung_server_resumes(
        self, private_redis: RedisServer, private_store: RedisChallengeStore
    ) -> None:
        """After a timed-out command, the store answers again once the server does."""
        await private_store.ping()
        private_redis.pause()
        try:
            await assert_unavailable(private_store.ping())
        finally:
            private_redis.resume()
        await private_store.ping()


class TestCredentials:
    async def test_connects_when_password_right(self, tmp_path: Path) -> None:
        """The configured password authenticates against requirepass."""
        with RedisServer(tmp_path, password=PASSWORD) as server:
            store = RedisChallengeStore(host=server.host, port=server.port, password=PASSWORD)
            try:
                assert await store.mark_once("m1", 60.0) is True
            finally:
                await store.close()

    async def test_error_text_has_no_password_when_password_wrong(self, tmp_path: Path) -> None:
        """A refused password is reported without the password in any rendered text."""
        with RedisServer(tmp_path, password=PASSWORD) as server:
            wrong = PASSWORD[::-1]
            store = RedisChallengeStore(host=server.host, port=server.port, password=wrong)
            try:
                exc = await assert_unavailable(store.ping())
            finally:
                await store.close()
        assert wrong not in error_text(exc)

    async def test_error_text_has_no_url_when_url_password_wrong(self, tmp_path: Path) -> None:
        """A URL with credentials never reaches the error text, neither whole nor its password."""
        with RedisServer(tmp_path, password=PASSWORD) as server:
            wrong = PASSWORD[::-1]
            url = f"redis://:{wrong}@{server.host}:{server.port}/0"
            store = RedisChallengeStore(url=url)
            try:
                exc = await assert_unavailable(store.ping())
            finally:
                await store.close()
        text = error_text(exc)
        assert wrong not in text
        assert url not in text

    async def test_error_text_has_no_password_when_server_down(self) -> None:
        """A connection failure with a password configured does not render the password."""
        store = RedisChallengeStore(port=free_tcp_port(), password=PASSWORD)
        try:
            exc = await assert_unavailable(store.ping())
        finally:
            await store.close()
        assert PASSWORD not in error_text(exc)


class TestConnectionOptions:
    async def test_connects_with_unix_socket_url(self, redis_server: RedisServer) -> None:
        """A unix:// URL reaches the server through its Unix socket."""
        store = RedisChallengeStore(url=f"unix://{redis_server.unix_path}?db=0")
        try:
            await store.ping()
        finally:
            await store.close()

    def test_rejects_tls_when_url_is_plain(self) -> None:
        """Asking for TLS with a redis:// URL is a configuration error, not a silent downgrade."""
        with pytest.raises(ValueError, match="rediss://"):
            RedisChallengeStore(url="redis://127.0.0.1:6379/0", tls=True)

    async def test_connects_with_tls_when_ca_trusted(self, tmp_path: Path) -> None:
        """With tls and the CA that signed the server certificate, commands go through."""
        with RedisServer(tmp_path, tls=True) as server:
            assert server.tls_port is not None
            assert server.ca_file is not None
            store = RedisChallengeStore(
                host=server.host, port=server.tls_port, tls=True, ca_file=str(server.ca_file)
            )
            try:
                assert await store.mark_once("m1", 60.0) is True
            finally:
                await store.close()

    async def test_connects_with_rediss_url_when_ca_trusted(self, tmp_path: Path) -> None:
        """A rediss:// URL with the CA file connects over TLS."""
        with RedisServer(tmp_path, tls=True) as server:
            assert server.tls_port is not None
            assert server.ca_file is not None
            url = f"rediss://{server.host}:{server.tls_port}/0"
            store = RedisChallengeStore(url=url, ca_file=str(server.ca_file))
            try:
                await store.ping()
            finally:
                await store.close()

    async def test_raises_store_unavailable_when_certificate_untrusted(
        self, tmp_path: Path
    ) -> None:
        """A server certificate from an unknown CA is refused, not silently accepted."""
        with RedisServer(tmp_path, tls=True) as server:
            assert server.tls_port is not None
            store = RedisChallengeStore(host=server.host, port=server.tls_port, tls=True)
            try:
                await assert_unavailable(store.ping())
            finally:
                await store.close()
