"""RedisChallengeStore beyond the shared contract: key layout, TTLs, outages, credentials.

Everything runs against real redis-server processes on loopback. Outages are produced for
real: the private server is stopped, frozen with SIGSTOP, or restarted on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.core.model import Factor, PendingChallenge
from mfa_radius.errors import StoreFull, StoreUnavailable
from mfa_radius.ports import RequestClaim
from tests.support.ports import free_tcp_port
from tests.support.redis_server import RedisServer
from tests.support.subscriptions import until_subscribed_at

WAKE_BOUND_S = 0.5
"""Longest acceptable delay between a publish and the waiter's wake-up (loopback, idle host)."""

HANG_GUARD_S = 2.0
"""Upper bound for a failing command: socket timeout 0.5 s plus one reconnect, with margin."""

POLL_INTERVAL_S = 0.01
"""Pause between two looks at a condition the test waits for."""

POLL_DEADLINE_S = 5.0
"""Longest wait for a condition (a subscription, a closed connection) before the test fails."""


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
    "count": lambda s: s.count("c1", 60.0),
    "uncount": lambda s: s.uncount("c1"),
    "peek_count": lambda s: s.peek_count("c1"),
    "delete": lambda s: s.delete("c1", "m1"),
    "publish_result": lambda s: s.publish_result("t1", "approve", 60.0),
    "wait_result": lambda s: s.wait_result("t1", 0.1),
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
    await store.count("c1", 300.0)
    await store.count("c1", 300.0)
    await store.publish_result("t1", "approve", 120.0)


async def assert_unavailable(operation: Awaitable[object]) -> StoreUnavailable:
    """Await ``operation``, expecting StoreUnavailable before the hang guard's deadline."""
    with pytest.raises(StoreUnavailable) as caught:
        async with asyncio.timeout(HANG_GUARD_S):
            await operation
    assert caught.value.backend == "redis"
    return caught.value


async def start_wait(
    store: RedisChallengeStore, key: str, url: str, prefix: str = "mfa:"
) -> asyncio.Task[str | None]:
    """Start a wait on ``key`` and return once its subscriber is subscribed."""
    task = asyncio.create_task(store.wait_result(key, 5.0))
    await until_subscribed_at(store, url, prefix)
    assert not task.done()
    return task


async def subscriber_count(admin: Redis) -> int:
    """How many connections to the server are in subscribed mode."""
    return len(await admin.client_list(_type="pubsub"))


async def until_subscriber_count(admin: Redis, expected: int) -> None:
    """Poll until ``expected`` connections are in subscribed mode; fail after the deadline."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    while (count := await subscriber_count(admin)) != expected:
        if time.monotonic() >= deadline:
            pytest.fail(f"{count} subscribed connections after {POLL_DEADLINE_S} s, not {expected}")
        await asyncio.sleep(POLL_INTERVAL_S)


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
        assert len(ttls) == 6  # with the user's list of challenges
        assert all(ttl > 0 for ttl in ttls)

    async def test_keys_use_configured_prefix(self, redis_url: str, admin: Redis) -> None:
        """Every key starts with the prefix, followed by its namespace."""
        store = RedisChallengeStore(url=redis_url, key_prefix="site7:")
        try:
            await run_flow(store)
        finally:
            await store.close()
        keys = {key async for key in admin.scan_iter(match="*")}
        assert keys == {
            b"site7:chal:s1",
            b"site7:uchal:alice",
            b"site7:once:m1",
            b"site7:req:r1",
            b"site7:cnt:c1",
            b"site7:res:t1",
        }

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


class TestCounterKeys:
    async def test_count_sets_window_as_ttl_on_first_hit(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """The first hit gives the counter the window, in milliseconds, as its TTL."""
        await store.count("c1", 1.25)
        assert 1000 < await admin.pttl("mfa:cnt:c1") <= 1250

    async def test_count_keeps_ttl_on_later_hit(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A later hit leaves the remaining TTL alone."""
        await store.count("c1", 60.0)
        await admin.pexpire("mfa:cnt:c1", 5000)
        await store.count("c1", 60.0)
        assert 0 < await admin.pttl("mfa:cnt:c1") <= 5000

    async def test_count_sets_ttl_when_counter_has_none(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A counter found without a TTL gets one, so no key lives forever."""
        await admin.set("mfa:cnt:c1", 3)
        assert await store.count("c1", 60.0) == 4
        assert await admin.pttl("mfa:cnt:c1") > 0

    async def test_peek_count_raises_store_unavailable_when_counter_corrupt(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A counter that is not an integer fails the call instead of reading as zero."""
        await admin.set("mfa:cnt:c1", b"many", px=60_000)
        with pytest.raises(StoreUnavailable):
            await store.peek_count("c1")

    async def test_count_raises_store_unavailable_when_counter_corrupt(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """Counting on a key that is not an integer fails the call, as peek_count does."""
        await admin.set("mfa:cnt:c1", b"many", px=60_000)
        with pytest.raises(StoreUnavailable):
            await store.count("c1", 60.0)

    async def test_uncount_keeps_ttl(self, store: RedisChallengeStore, admin: Redis) -> None:
        """Taking a hit back leaves the remaining TTL alone."""
        await store.count("c1", 60.0)
        await store.count("c1", 60.0)
        await admin.pexpire("mfa:cnt:c1", 5000)
        assert await store.uncount("c1") == 1
        assert 0 < await admin.pttl("mfa:cnt:c1") <= 5000

    async def test_uncount_creates_no_key_when_counter_absent(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """An uncount of a counter never hit writes nothing."""
        assert await store.uncount("c1") == 0
        assert await admin.exists("mfa:cnt:c1") == 0

    async def test_uncount_raises_store_unavailable_when_counter_corrupt(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """Giving back on a key that is not an integer fails the call and leaves the key."""
        await admin.set("mfa:cnt:c1", b"many", px=60_000)
        with pytest.raises(StoreUnavailable):
            await store.uncount("c1")
        assert await admin.get("mfa:cnt:c1") == b"many"

    async def test_delete_removes_both_namespaces(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """Delete removes the counter and the mark of each key, and nothing else."""
        await store.count("u1", 60.0)
        await store.mark_once("u1", 60.0)
        await store.put_challenge("u1", RECORD, 60.0)
        await store.delete("u1")
        assert {key async for key in admin.scan_iter(match="*")} == {
            b"mfa:chal:u1",
            b"mfa:uchal:alice",
        }


class TestResultKeys:
    async def test_publish_result_sets_ttl_in_milliseconds(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A result is stored under res: with its TTL as PX."""
        await store.publish_result("t1", "approve", 1.25)
        assert await admin.get("mfa:res:t1") == b"approve"
        assert 1000 < await admin.pttl("mfa:res:t1") <= 1250

    async def test_publish_result_announces_on_channel_named_like_key(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """The value goes out on the channel {prefix}res:{key}."""
        pubsub = admin.pubsub()
        try:
            await pubsub.subscribe("mfa:res:t1")
            assert (await pubsub.get_message(timeout=1.0) or {}).get("type") == "subscribe"
            await store.publish_result("t1", "fraud", 60.0)
            message = await pubsub.get_message(timeout=1.0)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        assert message is not None
        assert (message["channel"], message["data"]) == (b"mfa:res:t1", b"fraud")


class TestSubscriber:
    async def test_subscriber_starts_at_first_wait(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A store that never waits opens no subscriber connection."""
        await run_flow(store)
        assert await subscriber_count(admin) == 0
        await store.wait_result("t1", 0.05)
        await until_subscriber_count(admin, 1)

    async def test_waiters_share_one_subscriber_connection(
        self, store: RedisChallengeStore, admin: Redis, redis_url: str
    ) -> None:
        """Fifty concurrent waits use one subscribed connection and one pattern."""
        tasks = [asyncio.create_task(store.wait_result(f"t{i}", 5.0)) for i in range(50)]
        await until_subscribed_at(store, redis_url)
        assert await subscriber_count(admin) == 1
        assert await admin.pubsub_numpat() == 1
        await store.publish_result("t7", "approve", 60.0)
        assert await asyncio.wait_for(tasks[7], WAKE_BOUND_S) == "approve"
        await store.close()
        assert set(await asyncio.gather(*tasks)) == {None, "approve"}

    async def test_wait_ignores_results_of_other_prefix(self, redis_url: str) -> None:
        """A deployment with another key prefix on the same server does not wake the waiter."""
        mine = RedisChallengeStore(url=redis_url, key_prefix="a:")
        other = RedisChallengeStore(url=redis_url, key_prefix="b:")
        try:
            task = await start_wait(mine, "t1", redis_url, prefix="a:")
            await other.publish_result("t1", "approve", 60.0)
            await asyncio.sleep(0.1)  # time for a wrong wake-up to show: nothing to poll for
            assert not task.done()
            await mine.publish_result("t1", "deny", 60.0)
            assert await asyncio.wait_for(task, WAKE_BOUND_S) == "deny"
        finally:
            await mine.close()
            await other.close()

    async def test_wait_wakes_when_prefix_has_glob_characters(self, redis_url: str) -> None:
        """A prefix with *, ?, [ and backslash is matched literally by the subscription."""
        prefix = "s[1]*?\\:"
        waiter = RedisChallengeStore(url=redis_url, key_prefix=prefix)
        publisher = RedisChallengeStore(url=redis_url, key_prefix=prefix)
        lookalike = RedisChallengeStore(url=redis_url, key_prefix="s1xy\\:")
        try:
            task = await start_wait(waiter, "t1", redis_url, prefix=prefix)
            await lookalike.publish_result("t1", "approve", 60.0)
            await asyncio.sleep(0.1)  # time for a wrong wake-up to show: nothing to poll for
            assert not task.done()
            await publisher.publish_result("t1", "fraud", 60.0)
            assert await asyncio.wait_for(task, WAKE_BOUND_S) == "fraud"
        finally:
            for each in (waiter, publisher, lookalike):
                await each.close()

    async def test_close_stops_subscriber(self, store: RedisChallengeStore, admin: Redis) -> None:
        """After close, no task of the store is left and the subscription is gone."""
        await store.wait_result("t1", 0.05)
        await until_subscriber_count(admin, 1)
        await store.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await until_subscriber_count(admin, 0)

    async def test_wait_raises_store_unavailable_when_closed(
        self, store: RedisChallengeStore
    ) -> None:
        """A wait on a closed store fails instead of starting a new subscriber."""
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.wait_result("t1", 0.05)


@pytest.fixture
async def two_nodes(
    private_redis: RedisServer,
) -> AsyncIterator[tuple[RedisChallengeStore, RedisChallengeStore]]:
    """Two stores (two nodes) on this test's own server."""
    node_a = RedisChallengeStore(host=private_redis.host, port=private_redis.port)
    node_b = RedisChallengeStore(host=private_redis.host, port=private_redis.port)
    yield node_a, node_b
    await node_a.close()
    await node_b.close()


class TestSubscriberOutages:
    async def test_wait_wakes_when_waiter_started_after_restart(
        self,
        private_redis: RedisServer,
        two_nodes: tuple[RedisChallengeStore, RedisChallengeStore],
    ) -> None:
        """After a restart, a new waiter is woken by a publish from the other node."""
        node_a, node_b = two_nodes
        task = await start_wait(node_a, "t0", private_redis.url)
        await node_b.publish_result("t0", "approve", 60.0)
        assert await asyncio.wait_for(task, WAKE_BOUND_S) == "approve"
        private_redis.restart()
        task = await start_wait(node_a, "t1", private_redis.url)
        await node_b.publish_result("t1", "fraud", 60.0)
        assert await asyncio.wait_for(task, WAKE_BOUND_S) == "fraud"

    async def test_wait_wakes_when_publish_follows_restart(
        self,
        private_redis: RedisServer,
        two_nodes: tuple[RedisChallengeStore, RedisChallengeStore],
    ) -> None:
        """A waiter that began before a restart still learns a result published after it."""
        node_a, node_b = two_nodes
        task = await start_wait(node_a, "t1", private_redis.url)
        private_redis.restart()
        await node_b.publish_result("t1", "approve", 60.0)
        assert await asyncio.wait_for(task, 1.0 + WAKE_BOUND_S) == "approve"

    async def test_wait_wakes_when_published_while_subscriber_reconnects(
        self,
        private_redis: RedisServer,
        two_nodes: tuple[RedisChallengeStore, RedisChallengeStore],
    ) -> None:
        """A result published while the subscriber is still backing off reaches the waiter."""
        node_a, node_b = two_nodes
        task = await start_wait(node_a, "t1", private_redis.url)
        private_redis.stop()
        await asyncio.sleep(0.3)  # failed reconnects: the subscriber now backs off for 0.4 s
        private_redis.start()
        await node_b.publish_result("t1", "deny", 60.0)  # no subscriber hears this message
        assert await asyncio.wait_for(task, 1.0) == "deny"

    async def test_wait_ends_within_bound_when_server_stops_while_waiting(
        self,
        private_redis: RedisServer,
        two_nodes: tuple[RedisChallengeStore, RedisChallengeStore],
    ) -> None:
        """A waiter whose server goes away ends by its deadline: StoreUnavailable or None."""
        node_a, _ = two_nodes
        task = asyncio.create_task(node_a.wait_result("t1", 0.3))
        await until_subscribed_at(node_a, private_redis.url)
        private_redis.stop()
        with contextlib.suppress(StoreUnavailable):
            async with asyncio.timeout(HANG_GUARD_S):
                assert await task is None

    async def test_subscriber_recovers_when_server_returns_after_outage(
        self,
        private_redis: RedisServer,
        two_nodes: tuple[RedisChallengeStore, RedisChallengeStore],
    ) -> None:
        """After an outage longer than the first reconnect attempts, waits work again."""
        node_a, node_b = two_nodes
        await node_a.wait_result("t0", 0.05)
        private_redis.stop()
        await asyncio.sleep(0.5)  # the subscriber fails to reconnect a few times meanwhile
        private_redis.start()
        task = await start_wait(node_a, "t1", private_redis.url)
        await node_b.publish_result("t1", "approve", 60.0)
        assert await asyncio.wait_for(task, 2.0 + WAKE_BOUND_S) == "approve"


class TestPipelining:
    async def test_concurrent_operations_each_get_their_own_answer(
        self, store: RedisChallengeStore
    ) -> None:
        """Two hundred logins writing and reading at once, sharing pipelines, stay separate."""
        await asyncio.gather(
            *(
                store.put_challenge(f"s{i}", replace(RECORD, username=f"u{i}"), 60.0)
                for i in range(200)
            )
        )
        taken = await asyncio.gather(*(store.take_challenge(f"s{i}") for i in range(200)))
        assert [r.username if r else None for r in taken] == [f"u{i}" for i in range(200)]
        again = await asyncio.gather(*(store.take_challenge(f"s{i}") for i in range(200)))
        assert again == [None] * 200

    async def test_a_failing_command_fails_only_its_caller(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """A corrupt counter in the same pipeline as good commands fails alone."""
        await admin.set("mfa:cnt:bad", b"not-a-number")
        results = await asyncio.gather(
            store.count("good", 60.0),
            store.count("bad", 60.0),
            store.mark_once("m", 60.0),
            return_exceptions=True,
        )
        assert results[0] == 1
        assert isinstance(results[1], StoreUnavailable)
        assert results[2] is True

    async def test_scripts_load_again_after_script_flush(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """EVALSHA through a pipeline recovers from NOSCRIPT (a restarted or flushed server)."""
        assert await store.count("c", 60.0) == 1
        await admin.script_flush()
        assert await store.count("c", 60.0) == 2


WRITES: dict[str, Operation] = {
    "put_challenge": lambda s: s.put_challenge("new", RECORD, 60.0),
    "add_attempt": lambda s: s.add_attempt("s1"),
    "mark_once": lambda s: s.mark_once("m1", 60.0),
    "claim_request": lambda s: s.claim_request("r1", 60.0),
    "store_reply": lambda s: s.store_reply("r1", b"reply", 60.0),
    "count": lambda s: s.count("c1", 60.0),
    "uncount": lambda s: s.uncount("c1"),
    "publish_result": lambda s: s.publish_result("t1", "approve", 60.0),
}


async def fill_up(server: RedisServer) -> None:
    """Make the server refuse writes as a full ``maxmemory`` server with noeviction does.

    RedisServer takes no extra flags, so the limit is set at run time, below what the server
    already uses.
    """
    client = Redis(host=server.host, port=server.port)
    try:
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1")
    finally:
        await client.aclose()


class TestFullServer:
    @pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
    async def test_oom_refusal_raises_store_full(
        self, private_redis: RedisServer, private_store: RedisChallengeStore, write: Operation
    ) -> None:
        """A write refused with OOM (maxmemory, noeviction) is StoreFull, not an outage."""
        await private_store.put_challenge("s1", RECORD, 60.0)
        await private_store.count("c1", 60.0)
        await fill_up(private_redis)
        with pytest.raises(StoreFull) as caught:
            await write(private_store)
        assert (caught.value.backend, caught.value.detail) == ("redis", "OutOfMemoryError")

    async def test_reads_work_when_full(
        self, private_redis: RedisServer, private_store: RedisChallengeStore
    ) -> None:
        """A full server still reads, takes and deletes: a login in progress can finish."""
        await private_store.put_challenge("s1", RECORD, 60.0)
        await private_store.count("c1", 60.0)
        await fill_up(private_redis)
        assert await private_store.get_challenge("s1") == RECORD
        assert await private_store.peek_count("c1") == 1
        assert await private_store.take_challenge("s1") == RECORD
        await private_store.delete("c1")
        assert await private_store.peek_count("c1") == 0
        assert await private_store.wait_result("t1", 0.0) is None

    async def test_refused_put_changes_nothing(self, private_redis: RedisServer) -> None:
        """A put refused for memory evicts no older challenge of the user (the script is atomic)."""
        store = RedisChallengeStore(
            host=private_redis.host, port=private_redis.port, max_challenges_per_user=1
        )
        admin = Redis(host=private_redis.host, port=private_redis.port)
        try:
            await store.put_challenge("s1", RECORD, 60.0)
            await fill_up(private_redis)
            with pytest.raises(StoreFull):
                await store.put_challenge("s2", RECORD, 60.0)
            assert await store.get_challenge("s1") == RECORD
            assert await store.get_challenge("s2") is None
            assert await admin.lrange("mfa:uchal:alice", 0, -1) == [b"mfa:chal:s1"]
        finally:
            await store.close()
            await admin.aclose()


class TestPerUserList:
    async def test_list_outlives_the_longest_challenge(
        self, store: RedisChallengeStore, admin: Redis
    ) -> None:
        """The user's list takes the longest TTL of their challenges; a shorter one keeps it."""
        await store.put_challenge("s1", RECORD, 120.0)
        await store.put_challenge("s2", RECORD, 10.0)
        assert 119_000 < await admin.pttl("mfa:uchal:alice") <= 120_000

    async def test_list_holds_the_live_keys_oldest_first(
        self, redis_url: str, admin: Redis
    ) -> None:
        """Taken challenges leave the list at the next put; the cap keeps it short."""
        capped = RedisChallengeStore(url=redis_url, max_challenges_per_user=2)
        try:
            for key in ("s1", "s2", "s3"):
                await capped.put_challenge(key, RECORD, 60.0)
            await capped.take_challenge("s3")
            await capped.put_challenge("s4", RECORD, 60.0)
            assert await admin.lrange("mfa:uchal:alice", 0, -1) == [b"mfa:chal:s2", b"mfa:chal:s4"]
            assert await admin.exists("mfa:chal:s1") == 0
        finally:
            await capped.close()

    def test_rejects_per_user_cap_below_one(self) -> None:
        """A per-user cap that would refuse every challenge is a configuration error."""
        with pytest.raises(ValueError, match="max_challenges_per_user"):
            RedisChallengeStore(max_challenges_per_user=0)
