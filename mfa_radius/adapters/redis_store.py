"""RedisChallengeStore: the challenge store shared by every node of a cluster.

Responsibility: implement ``ports.ChallengeStore`` on Redis (>= 6.2 for GETDEL) with
redis.asyncio and hiredis, so that any node can finish a challenge another node started and a
retransmitted request is answered once across the cluster. Values are JSON (orjson), never
pickle.

Keys, all written with a TTL in milliseconds (PX >= 1), so nothing outlives its purpose::

    {prefix}chal:{key}   pending challenge, JSON of PendingChallenge.to_json_dict()
    {prefix}once:{key}   one-time mark (TOTP replay), value "1"
    {prefix}req:{key}    duplicate-request claim: "" while in progress, then the reply bytes

One round trip per operation, atomic on the server:

==================  ===================================================================
put_challenge       SET PX
get_challenge       GET
take_challenge      GETDEL (one-shot: exactly one caller on any node gets the record)
add_attempt         Lua: rewrite the count, SET KEEPTTL; nil when the challenge is gone
mark_once           SET NX PX
claim_request       Lua: SET "" NX PX, else GET
store_reply         SET PX
==================  ===================================================================

Scripts run with EVALSHA; the first call of each script on a server (and again after a restart
or SCRIPT FLUSH) costs two more round trips: NOSCRIPT, then SCRIPT LOAD.

The attempt count is the first member of the stored JSON (``{"n":3,...}``) so that the Lua
script can rewrite it as a string prefix. Re-encoding with Redis's cjson would change the
record: it keeps 14 significant digits of the epoch floats and turns the empty attribute list
``[]`` into ``{}``. The script checks only that prefix: a record with the count but other
fields missing is counted, and still reads as absent on get and take, so the login fails closed.

Failure behaviour (DESIGN.md §5: redis-py's default retry holds a hung server's command for a
long time): explicit connect and socket timeouts; one retry, only after a ``ConnectionError``
(a pooled connection that died with a restarted server is replaced transparently) and never
after a timeout (a timed-out command may have run; repeating it doubles the wait on a hung
server); a bounded ``BlockingConnectionPool`` whose wait is itself bounded. Every library error
becomes ``StoreUnavailable("redis", <exception class name>)``: no URL, host or password reaches
the message. A record that is not a readable challenge (not JSON, wrong shape, fields missing)
is treated as absent rather than crashing the request. After a Redis restart the same instance
works again; no re-creation is needed.

It must not log, read configuration, or decide what an outage means (``core/policy.py`` does).
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson
from redis.asyncio import BlockingConnectionPool, Connection, Redis, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from mfa_radius.core.model import PendingChallenge
from mfa_radius.errors import BackendError, StoreUnavailable, map_errors
from mfa_radius.ports import RequestClaim

_BACKEND: Final = "redis"

# OSError covers socket errors raised outside redis-py's wrappers and, on Python >= 3.11, the
# builtin TimeoutError that asyncio.TimeoutError aliases.
_ERRORS: Final[dict[type[BaseException], type[BackendError]]] = {
    RedisError: StoreUnavailable,
    OSError: StoreUnavailable,
}

_RETRY_BACKOFF_S: Final = 0.02
"""Pause before the single reconnect attempt: enough for a restarted server's listen queue."""

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


class RedisChallengeStore:
    """A ``ports.ChallengeStore`` on Redis, shared by every node of a cluster.

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

    Raises:
        ValueError: a timeout or the pool size is not positive, or ``tls``/``ca_file`` is set
            with a URL that is not ``rediss://``.
    """

    shared = True
    """Shared by every node over the network: calls may block and get deadlines."""

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
    ) -> None:
        if not (socket_timeout > 0 and connect_timeout > 0):
            raise ValueError("socket_timeout and connect_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._chal = f"{key_prefix}chal:"
        self._once = f"{key_prefix}once:"
        self._req = f"{key_prefix}req:"
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
        self._add_attempt = self._redis.register_script(_ADD_ATTEMPT_LUA)
        self._claim = self._redis.register_script(_CLAIM_LUA)

    async def put_challenge(self, key: str, record: PendingChallenge, ttl: float) -> None:
        """Store a pending challenge under ``key`` for ``ttl`` seconds (overwrites).

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        value = _encode(record)
        with map_errors(_ERRORS, _BACKEND):
            await self._redis.set(self._chal + key, value, px=_px(ttl))

    async def get_challenge(self, key: str) -> PendingChallenge | None:
        """Return the pending challenge under ``key`` without consuming it, or None.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            raw = await self._redis.get(self._chal + key)
        return _decode(raw)

    async def take_challenge(self, key: str) -> PendingChallenge | None:
        """Remove and return the challenge with GETDEL: exactly one caller on any node gets it.

        Returns:
            The challenge, or None when absent, expired, already taken or unreadable.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            raw = await self._redis.getdel(self._chal + key)
        return _decode(raw)

    async def add_attempt(self, key: str) -> int | None:
        """Count one wrong code on the challenge atomically, keeping its TTL.

        Returns:
            The new attempt count, or None when the challenge is gone (or unreadable).

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            count = await self._add_attempt(keys=[self._chal + key])
        return count if isinstance(count, int) else None

    async def mark_once(self, key: str, ttl: float) -> bool:
        """Set a mark with SET NX PX.

        Returns:
            True for the first caller on any node; False while the mark exists.

        Raises:
            StoreUnavailable: Redis did not answer or refused the command.
        """
        with map_errors(_ERRORS, _BACKEND):
            created = await self._redis.set(self._once + key, b"1", px=_px(ttl), nx=True)
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
            found = await self._claim(keys=[self._req + key], args=[_px(ttl)])
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
            await self._redis.set(self._req + key, reply, px=_px(ttl))

    async def ping(self) -> None:
        """Check that Redis answers (``check-config``, readiness).

        Raises:
            StoreUnavailable: Redis did not answer, or refused the credentials.
        """
        with map_errors(_ERRORS, _BACKEND):
            await self._redis.ping()

    async def close(self) -> None:
        """Close the client and every pooled connection.

        Raises:
            StoreUnavailable: closing a connection failed.
        """
        with map_errors(_ERRORS, _BACKEND):
            await self._redis.aclose()
