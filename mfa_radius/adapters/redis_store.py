"""RedisChallengeStore: the challenge store shared by every node of a cluster.

Responsibility: implement the store ports (``ports.SharedState``) on Redis (>= 6.2 for GETDEL) with
redis.asyncio and hiredis, so that any node can finish a challenge another node started and a
retransmitted request is answered once across the cluster. Values are JSON (orjson), never
pickle.

Keys, all written with a TTL in milliseconds (PX >= 1), so nothing outlives its purpose::

    {prefix}chal:{key}   pending challenge, JSON of PendingChallenge.to_json_dict()
    {prefix}uchal:{user} list of one user's challenge keys (full names), oldest first; its TTL
                         is the longest of theirs, so it never outlives them by much
    {prefix}once:{key}   one-time mark (TOTP replay), value "1"
    {prefix}req:{key}    duplicate-request claim: "" while in progress, then the reply bytes
    {prefix}cnt:{key}    counter (failed logins, rate limits), an integer; TTL from its first hit
    {prefix}res:{key}    result of an out-of-band step (approve call keypress), a UTF-8 string

Channel: ``{prefix}res:{key}`` carries the same result to the nodes that wait for it.

One round trip per operation, atomic on the server; operations issued in the same event-loop
iteration share a pipeline (``_Pipeliner``), so under load many logins pay one round trip:

==================  ===================================================================
put_challenge       Lua: SET PX, then the user's list: drop gone keys, DEL + LPOP the oldest
                    while at the cap, RPUSH the new key, PEXPIRE the list
get_challenge       GET
take_challenge      GETDEL (one-shot: exactly one caller on any node gets the record)
add_attempt         Lua: rewrite the count, SET KEEPTTL; nil when the challenge is gone
mark_once           SET NX PX
claim_request       Lua: SET "" NX PX, else GET
store_reply         SET PX
count               Lua: INCR, then PEXPIRE when the key has no TTL (the first hit)
uncount             Lua: DECR when the value is above zero (DECR keeps the TTL)
peek_count          GET
delete              DEL of ``cnt:`` and ``once:`` for every key given
publish_result      Lua: SET PX, then PUBLISH
wait_result         GET (once registered), then the subscriber; GET again at the deadline
==================  ===================================================================

Waiting for a result (an approve call answered through the webhook of *another* node) uses
one subscriber connection per store instance, outside the command pool, so thousands of
waiting logins cost no pool connection each and no polling:

* It is started lazily by the first :meth:`RedisChallengeStore.wait_result` and holds one
  ``PSUBSCRIBE {prefix}res:*`` (prefix glob-escaped). A listener task dispatches each message
  to the local futures registered for its key. One pattern per node scales with waiters (no
  SUBSCRIBE round trip per login); every node receives every result, which for approve calls
  (a few per second at most) is noise.
* A waiter registers its future *before* its first GET. A value published before the GET is
  seen by it; one published after is delivered to the future, provided the subscription was
  active. To close the gap while the subscription is (re)established, the listener runs one
  MGET over every waited key each time Redis confirms the PSUBSCRIBE: anything published
  before the confirmation was SET before it too.
* Connection loss (restart, failover) makes the listener reconnect with a capped backoff and
  re-subscribe; an idle link is probed with PING and replaced when the PONG does not come
  (a half-open TCP connection never reports an error by itself). A waiter also runs a final
  GET at its deadline, so a result is not lost to a listener that is still reconnecting.
* :meth:`RedisChallengeStore.close` cancels the listener, closes its connection and ends
  every wait with None.

Scripts run with EVALSHA; the first call of each script on a server (and again after a restart
or SCRIPT FLUSH) costs two more round trips: NOSCRIPT, then SCRIPT LOAD.

The attempt count is the first member of the stored JSON (``{"n":3,...}``) so that the Lua
script can rewrite it as a string prefix. Re-encoding with Redis's cjson would change the
record: it keeps 14 significant digits of the epoch floats and turns the empty attribute list
``[]`` into ``{}``. The script checks only that prefix: a record with the count but other
fields missing is counted, and still reads as absent on get and take, so the login fails closed.

Per-user cap: a user holds at most ``max_challenges_per_user`` pending challenges. The put
script keeps the user's list in the same atomic call as the SET: keys of challenges already
taken (GETDEL) or expired are dropped from the list first, so they no longer count, and while
the list is at the cap its oldest key is popped and its challenge deleted. Overwriting a live
challenge keeps its place. The script touches keys it does not declare (the evicted
challenges), which a single server or a replicated primary allows but Redis Cluster does not;
the store does not support Redis Cluster.

Full: with ``maxmemory`` and the ``noeviction`` policy, Redis refuses writes with ``OOM command
not allowed``; that becomes :class:`~mfa_radius.errors.StoreFull` (reads, GETDEL and DEL keep
working), which the login engine rejects whatever the fail mode. Every script's first write is a
command Redis refuses when out of memory (SET, INCR, DECR), so a refused script has changed
nothing: Redis 7 lets a script that has already written go on writing past ``maxmemory``.

Failure behaviour (DESIGN.md §5: redis-py's default retry holds a hung server's command for a
long time): explicit connect and socket timeouts; one retry, only after a ``ConnectionError``
(a pooled connection that died with a restarted server is replaced transparently) and never
after a timeout (a timed-out command may have run; repeating it doubles the wait on a hung
server); a bounded ``BlockingConnectionPool`` whose wait is itself bounded. Every library error
becomes ``StoreUnavailable("redis", <exception class name>)`` (``StoreFull`` for an OOM refusal):
no URL, host or password reaches the message. A record that is not a readable challenge (not
JSON, wrong shape, fields missing) is treated as absent rather than crashing the request.
After a Redis restart the same instance works again; no re-creation is needed.

It must not log, read configuration, or decide what an outage means (``core/policy.py`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, Final

import orjson
from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis, SSLConnection
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, RedisError

from mfa_radius.core.model import PendingChallenge
from mfa_radius.errors import BackendError, StoreFull, StoreUnavailable, map_errors
from mfa_radius.ports import RequestClaim

_BACKEND: Final = "redis"

# OSError covers socket errors raised outside redis-py's wrappers and, on Python >= 3.11, the
# builtin TimeoutError that asyncio.TimeoutError aliases.
# First match wins: an OOM refusal (maxmemory with noeviction) is a full store, not an outage.
_ERRORS: Final[dict[type[BaseException], type[BackendError]]] = {
    OutOfMemoryError: StoreFull,
    RedisError: StoreUnavailable,
    OSError: StoreUnavailable,
}

_RETRY_BACKOFF_S: Final = 0.02
"""Pause before the single reconnect attempt: enough for a restarted server's listen queue."""

_PUT_CHALLENGE_LUA: Final = """
local live = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local listed = redis.call('LPOS', KEYS[2], KEYS[1])
if live == 0 or not listed then
  if listed then redis.call('LREM', KEYS[2], 0, KEYS[1]) end
  for _, k in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if redis.call('EXISTS', k) == 0 then redis.call('LREM', KEYS[2], 0, k) end
  end
  local cap = tonumber(ARGV[3])
  while redis.call('LLEN', KEYS[2]) >= cap do
    redis.call('DEL', redis.call('LPOP', KEYS[2]))
  end
  redis.call('RPUSH', KEYS[2], KEYS[1])
end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
"""Store a challenge (KEYS[1]) and keep its user's list (KEYS[2]) within the cap (ARGV[3]).

The SET is the first write, so an OOM refusal leaves everything as it was. A key that was
live and listed keeps its place; otherwise it goes to the back after the list has lost the
keys of challenges that are gone and, while at the cap, its oldest (whose challenge is
deleted). The list lives as long as its longest-lived challenge."""

_ADD_ATTEMPT_LUA: Final = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
local n, rest = string.match(v, '^{"n":(%d+)(,.*)$')
if not n then return false end
n = tonumber(n) + 1
redis.call('SET', KEYS[1], '{"n":' .. n .. rest, 'KEEPTTL')
return n
"""
"""Increment the leading ``"n"`` member in place, keeping the TTL (KEEPTTL, Redis >= 6.0).

Returns nil for a missing record, and for a corrupt one (anything not starting with the count),
which the caller reads as "challenge gone"."""

_CLAIM_LUA: Final = """
if redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[1]) then return 1 end
return redis.call('GET', KEYS[1])
"""
"""Claim or read a request marker atomically: 1 for the new owner, else the stored value."""

_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == '' then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""End an in-progress claim, but never delete a reply another step already stored."""

_COUNT_LUA: Final = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
"""Count one hit; the first hit (or a counter somehow left without TTL) starts the window.

PTTL instead of ``PEXPIRE NX`` keeps Redis 6.2 supported and also repairs a key without TTL."""

_UNCOUNT_LUA: Final = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local n = tonumber(v)
if not n then return redis.error_reply('ERR counter is not an integer') end
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""
"""Take one back from a counter: never below zero, never creating it; DECR keeps the TTL.

A value that is not an integer is an error (``StoreUnavailable``), as for ``count``."""

_PUBLISH_LUA: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('PUBLISH', KEYS[1], ARGV[1])
"""
"""Store a result and announce it on the channel of the same name, atomically: a node that
reads the key after the PUBLISH went out is sure to find the value."""

_SUBSCRIBER_PING_S: Final = 5.0
"""Idle seconds after which the subscriber sends PING; no PONG within as long again means the
link is dead (a half-open connection raises no error) and it is replaced."""

_SUBSCRIBER_BACKOFF_MIN_S: Final = 0.05
_SUBSCRIBER_BACKOFF_MAX_S: Final = 2.0
"""Pauses between subscriber reconnect attempts, doubling from the minimum to the maximum."""

_GLOB_SPECIAL: Final = frozenset("*?[]\\")


def _glob_escape(text: str) -> str:
    """Escape Redis glob characters so a key prefix matches only itself in PSUBSCRIBE."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def _check_timeout(timeout: float) -> None:
    """Reject a wait without an end: every wait of the proxy has a deadline."""
    if not math.isfinite(timeout):
        raise ValueError("timeout must be a finite number of seconds")


_OWNER: Final = RequestClaim(owner=True)
_IN_PROGRESS: Final = RequestClaim(owner=False)


def _px(ttl: float) -> int:
    """Convert a TTL in seconds to Redis PX milliseconds, rounded up, at least 1."""
    if not math.isfinite(ttl):
        raise ValueError("ttl must be a finite number of seconds")
    return max(1, math.ceil(ttl * 1000.0))


def _encode(record: PendingChallenge) -> bytes:
    """Serialise a challenge with the attempt count first (see the Lua script)."""
    body = record.to_json_dict()
    return orjson.dumps({"n": body.pop("n"), **body})


def _decode(raw: bytes | str | None) -> PendingChallenge | None:
    """Parse a stored challenge; a missing or unreadable record reads as absent."""
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            return None
        return PendingChallenge.from_json_dict(data)
    except ValueError:  # orjson.JSONDecodeError is a ValueError, as is from_json_dict's error
        return None


class _Pipeliner:
    """Sends the commands issued in one event-loop iteration as one pipeline.

    Under load many logins talk to Redis at the same moment; a round trip per command costs
    each of them a pool checkout, a socket write and a read. Commands queued while the loop
    runs other requests go out together (no MULTI: each stays its own atomic command), and
    each caller gets its own reply or its own error. At low load a pipeline holds one command,
    so nobody waits for company.
    """

    def __init__(self, redis: Redis, deadline: float, max_batch: int = 256) -> None:
        self._redis = redis
        self._deadline = deadline
        self._max_batch = max_batch
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, *args: Any) -> Any:
        """Run one command (``"SET", key, value, "PX", ms``) in the next pipeline.

        Raises:
            RedisError: the command failed, or the pipeline's connection did.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command(*args)
        try:
            # One deadline per batch bounds every caller in it, whatever redis-py's pool wait,
            # socket timeouts and reconnect add up to (a hung server would hold them longer).
            async with asyncio.timeout(self._deadline):
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 (handed to every caller of the batch)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def close(self) -> None:
        """Wait for pipelines in flight (their callers are waiting for them)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)


class RedisChallengeStore:
    """A the store ports (``ports.SharedState``) on Redis, shared by every node of a cluster.

    Connection settings come either from ``url`` or from the separate arguments. ``url``
    accepts the three redis-py schemes::

        redis://[[username]:[password]@]host[:port][/db]
        rediss://[[username]:[password]@]host[:port][/db]      (TLS)
        unix://[[username]:[password]@]/path/to/redis.sock[?db=0]

    Values in the URL win over ``host``, ``port``, ``db``, ``username`` and ``password``.

    Args:
        url: a redis://, rediss:// or unix:// URL; None to use the separate arguments.
        host: server address (ignored with ``url``).
        port: server TCP port (ignored with ``url``).
        db: database number.
        username: ACL user name, or None for the default user.
        password: password (``requirepass`` or ACL), or None.
        key_prefix: prepended to every key, so several deployments can share one server.
        socket_timeout: seconds to wait for a reply before the command fails.
        connect_timeout: seconds to wait for a TCP (and TLS) connection.
        tls: use TLS with host/port (a URL selects TLS with ``rediss://``).
        ca_file: PEM bundle that verifies the server certificate; None for the system store.
        max_connections: upper bound of the connection pool; a command waits at most
            ``connect_timeout + socket_timeout`` seconds for a free connection.
        command_timeout: the longest any command may take, pool wait and reconnect
            included; past it the command fails with ``StoreUnavailable`` (the caller's fail
            mode decides). The store bounds itself so that no caller needs to.
        reply_timeout: the longest :meth:`store_reply` may take: the reply to the NAS waits
            for it, so it is kept short.
        max_challenges_per_user: the most pending challenges one user holds; storing one
            more removes that user's oldest.

    Raises:
        ValueError: a timeout, the pool size or the per-user cap is not positive, or
            ``tls``/``ca_file`` is set with a URL that is not ``rediss://``.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        key_prefix: str = "mfa:",
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        tls: bool = False,
        ca_file: str | None = None,
        max_connections: int = 64,
        command_timeout: float = 1.0,
        reply_timeout: float = 0.25,
        max_challenges_per_user: int = 5,
    ) -> None:
        if max_challenges_per_user < 1:
            raise ValueError("max_challenges_per_user must be at least 1")
        self._per_user = max_challenges_per_user
        if not (socket_timeout > 0 and connect_timeout > 0):
            raise ValueError("socket_timeout and connect_timeout must be positive")
        if not (command_timeout > 0 and reply_timeout > 0):
            raise ValueError("command_timeout and reply_timeout must be positive")
        self._reply_timeout = min(reply_timeout, command_timeout)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._chal = f"{key_prefix}chal:"
        self._user_chal = f"{key_prefix}uchal:"
        self._once = f"{key_prefix}once:"
        self._req = f"{key_prefix}req:"
        self._cnt = f"{key_prefix}cnt:"
        self._res = f"{key_prefix}res:"
        self._res_channel_prefix = self._res.encode()
        self._res_pattern = _glob_escape(self._res) + "*"
        # Connection options; Any stays inside this constructor (redis-py takes **kwargs).
        connection: dict[str, Any] = {
            "db": db,
            "username": username,
            "password": password,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(
                ConstantBackoff(_RETRY_BACKOFF_S), 1, supported_errors=(RedisConnectionError,)
            ),
        }
        pool_wait = connect_timeout + socket_timeout
        pool: BlockingConnectionPool
        if url is not None:
            if (tls or ca_file is not None) and not url.startswith("rediss://"):
                raise ValueError("tls and ca_file need a rediss:// url")
            if ca_file is not None:
                connection["ssl_ca_certs"] = ca_file
            pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_wait, **connection
            )
        else:
            connection_class: type[Connection] = Connection
            if tls:
                connection_class = SSLConnection
                connection.update(ssl_ca_certs=ca_file, ssl_cert_reqs="required")
            pool = BlockingConnectionPool(
                max_connections=max_connections,
                timeout=pool_wait,
                connection_class=connection_class,
                host=host,
                port=port,
                **connection,
            )
        self._redis = Redis.from_pool(pool)
        self._pipe = _Pipeliner(self._redis, command_timeout)
        self._put_challenge = self._redis.register_script(_PUT_CHALLENGE_LUA)
        self._add_attempt = self._redis.register_script(_ADD_ATTEMPT_LUA)
        self._claim = self._redis.register_script(_CLAIM_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)
        self._count = self._redis.register_script(_COUNT_LUA)
        self._uncount = self._redis.register_script(_UNCOUNT_LUA)
        self._publish = self._redis.register_script(_PUBLISH_LUA)
        # The subscriber's own pool, with the same connection options: a subscribed connection
        # cannot run commands, so it must not take a slot of the command pool. It holds one
        # connection; the second slot only covers a reconnect racing the release of the old one.
        self._subscriber = Redis.from_pool(
            ConnectionPool(
                connection_class=pool.connection_class, max_connections=2, **pool.connection_kwargs
            )
        )
        self._waiters: dict[str, set[asyncio.Future[str | None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._backoff = _SUBSCRIBER_BACKOFF_MIN_S
        self._closed = False

    async def _run_script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA through the pipeline; on NOSCRIPT (first use, Redis restarted) load it once."""
        try:
            return await self._pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys=keys, args=args)

    async def put_challenge(self, key: str, record: PendingChallenge, ttl: float) -> None:
        """Store a pending challenge under ``key`` for ``ttl`` seconds (overwrites).

        In the same atomic call, a new key for a user who holds ``max_challenges_per_user``
        live challenges removes that user's oldest.

        Raises:
            StoreFull: Redis is at ``maxmemory`` and refused the write.
            StoreUnavailable: Redis did not answer or refused the command.
        """
        value = _encode(record)
        keys = [self._chal + key, self._user_chal + record.username]
        with map_errors(_ERRORS, _BACKEND):
            await self._run_script(self._put_challenge, keys, [value, _px(ttl), self._per_user])

    async def get_challenge(self, key: str) -> PendingChallenge | None:
        """Return the pending challenge under ``key`` without consuming it, or None.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            raw = await self._pipe.call("GET", self._chal + key)
        return _decode(raw)

    async def take_challenge(self, key: str) -> PendingChallenge | None:
        """Remove and return the challenge with GETDEL: exactly one caller on any node gets it.

        Returns:
            The challenge, or None when absent, expired, already taken or unreadable.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            raw = await self._pipe.call("GETDEL", self._chal + key)
        return _decode(raw)

    async def add_attempt(self, key: str) -> int | None:
        """Count one wrong code on the challenge atomically, keeping its TTL.

        Returns:
            The new attempt count, or None when the challenge is gone (or unreadable).

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            count = await self._run_script(self._add_attempt, [self._chal + key], [])
        return count if isinstance(count, int) else None

    async def mark_once(self, key: str, ttl: float) -> bool:
        """Set a mark with SET NX PX.

        Returns:
            True for the first caller on any node; False while the mark exists.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            created = await self._pipe.call("SET", self._once + key, b"1", "PX", _px(ttl), "NX")
        return bool(created)

    async def claim_request(self, key: str, ttl: float) -> RequestClaim:
        """Claim a request for processing (RFC 5080 §2.2.2 duplicate detection across nodes).

        Returns:
            ``owner=True`` for the first claimant on any node; otherwise the reply stored by
            :meth:`store_reply`, or None while the owner is still working on it (the marker
            is the empty string, so an empty reply would read as "in progress"; a RADIUS
            packet is at least 20 bytes, RFC 2865 §3).

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            found = await self._run_script(self._claim, [self._req + key], [_px(ttl)])
        if isinstance(found, int):
            return _OWNER
        if isinstance(found, bytes) and found:
            return RequestClaim(owner=False, reply=found)
        return _IN_PROGRESS

    async def store_reply(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep the reply of a claimed request so that duplicates get the same bytes.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            async with asyncio.timeout(self._reply_timeout):
                await self._pipe.call("SET", self._req + key, reply, "PX", _px(ttl))

    async def release_request(self, key: str) -> None:
        """End a claim that produced no reply (Lua: delete the marker only if still empty).

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            await self._run_script(self._release, [self._req + key], [])

    async def count(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first hit (one round trip).

        Later hits do not extend the window, so a steady trickle of failures cannot keep a
        lock-out alive forever.

        Returns:
            The counter's value after this hit (1 for the first).

        Raises:
            StoreUnavailable: Redis did not answer, refused the command, or the key holds
                something that is not an integer.
        """
        px = _px(window)
        with map_errors(_ERRORS, _BACKEND):
            value = await self._run_script(self._count, [self._cnt + key], [px])
        if not isinstance(value, int):
            raise StoreUnavailable(_BACKEND, "unexpected reply")
        return value

    async def uncount(self, key: str) -> int:
        """Take one back from a counter atomically (one round trip), never below zero.

        The counter keeps its TTL, so giving a hit back never extends the window; an absent
        or expired counter is not created.

        Returns:
            The counter's value after this (0 when absent or expired).

        Raises:
            StoreUnavailable: Redis did not answer, refused the command, or the key holds
                something that is not an integer.
        """
        with map_errors(_ERRORS, _BACKEND):
            value = await self._run_script(self._uncount, [self._cnt + key], [])
        if not isinstance(value, int):
            raise StoreUnavailable(_BACKEND, "unexpected reply")
        return value

    async def peek_count(self, key: str) -> int:
        """Return a counter's value without changing it (0 when absent or expired).

        Raises:
            StoreUnavailable: Redis did not answer, or the key holds something that is not an
                integer (read as a failure, like ``count`` does, rather than as zero: a counter
                guards a lock-out and must not silently reset).
        """
        with map_errors(_ERRORS, _BACKEND):
            raw = await self._pipe.call("GET", self._cnt + key)
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError as exc:
            raise StoreUnavailable(_BACKEND, "corrupt counter") from exc

    async def delete(self, *keys: str) -> None:
        """Remove the counters and marks named by ``keys`` with one DEL (``user unlock``).

        Both namespaces go, because an unlock must clear the failure counter and any lock-out
        mark kept under the same key; keys that do not exist are ignored.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        if not keys:
            return
        names = [namespace + key for key in keys for namespace in (self._cnt, self._once)]
        with map_errors(_ERRORS, _BACKEND):
            await self._pipe.call("DEL", *names)

    async def publish_result(self, key: str, value: str, ttl: float) -> None:
        """Store a result for ``ttl`` seconds and announce it to every node (one round trip).

        The SET comes first so that a node whose subscription is not yet active finds the
        value with its GET (see the module docstring).

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        px = _px(ttl)
        name = self._res + key
        data = value.encode()
        with map_errors(_ERRORS, _BACKEND):
            await self._publish(keys=[name], args=[data, px])

    async def wait_result(self, key: str, timeout: float) -> str | None:  # noqa: ASYNC109 - the port's signature
        """Wait up to ``timeout`` seconds for :meth:`publish_result` on ``key``, from any node.

        The wait holds no pool connection: it is a future woken by the shared subscriber.
        At the deadline one more GET runs, so the call may outlast ``timeout`` by up to one
        command's socket timeout.

        Returns:
            The value, or None when nothing was published in time (or the store was closed
            meanwhile). A value published before the wait began is returned at once.

        Raises:
            StoreUnavailable: Redis did not answer the GET, or the store is closed.
            ValueError: ``timeout`` is not finite.
        """
        _check_timeout(timeout)
        if self._closed:
            raise StoreUnavailable(_BACKEND, "closed")
        if timeout <= 0:
            return await self._get_result(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._start_listener()
        waiter: asyncio.Future[str | None] = loop.create_future()
        waiters = self._waiters.setdefault(key, set())
        # Registered before the GET: a result published between the GET and the wait is
        # delivered to this future instead of being missed.
        waiters.add(waiter)
        try:
            found = await self._get_result(key)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait((waiter,), timeout=remaining)
            if waiter.done():
                return waiter.result()
            # The subscriber may have been reconnecting when the result was published.
            return await self._get_result(key)
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(key) is waiters:
                del self._waiters[key]

    async def ping(self) -> None:
        """Check that Redis answers (``check-config``, readiness).

        Raises:
            StoreUnavailable: Redis did not answer, or refused the credentials.
        """
        with map_errors(_ERRORS, _BACKEND):
            await self._redis.ping()

    async def close(self) -> None:
        """Stop the subscriber, end every wait with None, close every connection.

        Raises:
            StoreUnavailable: closing a connection failed.
        """
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            # Cancel until it sticks: on Python 3.11, redis-py's connect (asyncio.wait_for) can
            # swallow a cancellation that lands as the connection completes.
            while not listener.done():
                listener.cancel()
                await asyncio.wait((listener,), timeout=_SUBSCRIBER_BACKOFF_MIN_S)
            with contextlib.suppress(asyncio.CancelledError):
                listener.result()  # an unexpected failure of the listener surfaces here
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        await self._pipe.close()
        with map_errors(_ERRORS, _BACKEND):
            await self._subscriber.aclose()
            await self._redis.aclose()

    async def _get_result(self, key: str) -> str | None:
        """Read a published result, or None."""
        with map_errors(_ERRORS, _BACKEND):
            raw = await self._redis.get(self._res + key)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None

    def _start_listener(self) -> None:
        """Start the subscriber task unless it is running (lazily: most nodes never wait)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="redis-result-subscriber"
            )

    async def _listen(self) -> None:
        """Keep one PSUBSCRIBE alive until :meth:`close`, reconnecting after any loss."""
        while not self._closed:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.psubscribe(self._res_pattern)
                await self._pump(pubsub)
            except (RedisError, OSError):
                pass  # connection lost or refused: reconnect below, waiters keep their GETs
            finally:
                await _close_quietly(pubsub)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _SUBSCRIBER_BACKOFF_MAX_S)

    async def _pump(self, pubsub: PubSub) -> None:
        """Dispatch messages until the link looks dead (no PONG to an idle-time PING)."""
        ping_sent = False
        while True:
            message = await pubsub.get_message(timeout=_SUBSCRIBER_PING_S)
            if message is None:
                if ping_sent:
                    return
                await pubsub.ping()
                ping_sent = True
                continue
            ping_sent = False
            kind = message.get("type")
            if kind == "pmessage":
                self._dispatch(message["channel"], message["data"])
            elif kind == "psubscribe":
                # Also sent after redis-py's own reconnect re-subscribes: catch up either way.
                self._backoff = _SUBSCRIBER_BACKOFF_MIN_S
                await self._catch_up()

    async def _catch_up(self) -> None:
        """Read every waited-for key once: results published while unsubscribed are SET."""
        keys = list(self._waiters)
        if not keys:
            return
        try:
            with map_errors(_ERRORS, _BACKEND):
                values = await self._redis.mget([self._res + key for key in keys])
        except StoreUnavailable:
            return  # each waiter still runs its own GET at its deadline
        for key, raw in zip(keys, values, strict=True):
            if isinstance(raw, bytes):
                self._resolve(key, raw)

    def _dispatch(self, channel: object, data: object) -> None:
        """Hand one published result to the local waiters of its key."""
        if not (isinstance(channel, bytes) and isinstance(data, bytes)):
            return
        if channel.startswith(self._res_channel_prefix):
            key = channel[len(self._res_channel_prefix) :].decode("utf-8", "replace")
            self._resolve(key, data)

    def _resolve(self, key: str, raw: bytes) -> None:
        """Wake every local waiter on ``key`` with the value."""
        value = raw.decode("utf-8", "replace")
        for waiter in self._waiters.get(key, ()):
            if not waiter.done():
                waiter.set_result(value)


async def _close_quietly(pubsub: PubSub) -> None:
    """Release a subscriber connection that may already be broken."""
    # The socket is gone either way; the next subscription opens a new one.
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
