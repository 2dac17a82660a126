"""MemoryChallengeStore: the embedded, single-node challenge store.

Responsibility: keep pending challenges, one-time marks, counters, out-of-band results and the
reply cache of one node in process memory, with the same observable behaviour as
``RedisChallengeStore`` (both pass the contract tests in ``tests/adapters/contract/``). It is
the embedded default, so it sits on the hot path of every login and is written for speed: plain
``OrderedDict`` tables, no copies of the frozen ``PendingChallenge`` values, no locks.

Rules this module keeps:

* **Atomic by construction.** No method awaits before it has finished touching the tables, so
  on one event loop every operation runs to completion before another starts. That gives
  ``take_challenge``, ``mark_once`` and ``claim_request`` their exactly-once answers for free.
  A second node cannot share this store; clusters use Redis.
* **Time comes from the injected clock** (``ports.Clock``), so tests expire entries with
  ``FakeClock.advance`` instead of sleeping. The one exception is how long
  :meth:`MemoryChallengeStore.wait_result` waits: that is a real duration on the event loop (a
  caller waiting for a phone keypress), while the result it waits for still expires on the clock.
* **Waiting costs a future, not a poll.** ``publish_result`` resolves the futures of every
  waiter on its key in the same step that stores the value, so a waiter wakes at once, and a
  value stored before the wait began is found by the waiter's first look.
* **Memory stays bounded.** Reads drop an expired entry they meet (lazy expiry); every write
  also drops a few expired entries from the front of each table (amortised sweep). Each table is
  insertion-ordered and a rewritten key moves to the back, so with the constant TTL a caller
  uses per kind of entry the front is always the next entry to expire and the sweep pops in
  O(1) without a separate expiry index (a heap would keep stale index entries for every taken
  or overwritten key until their TTL ran out). When TTLs vary, an expired entry may wait behind
  a longer-lived one: it is invisible to reads and is dropped by the full purge that runs, at
  most once per second of clock time, before the store admits it is full.
* **No unbounded growth.** Beyond ``max_entries`` live entries a write of a new key raises
  ``StoreFull("memory", "full")`` instead of growing until the process is killed; the login
  engine rejects such a login (``store_full``) whatever the fail mode. Reads, takes, and
  rewrites of keys already held keep working when full.
* **One user cannot fill it.** Each user holds at most ``max_challenges_per_user`` pending
  challenges: an index maps each username to its challenge keys in the order they were first
  stored, and a new challenge for a user at the cap removes that user's oldest. Every path
  that removes a challenge (take, lazy expiry, sweep, purge, eviction) also removes it from
  the index, so a taken or expired challenge frees its slot and the index holds no dead user.

It must not do I/O, log, or read the system clock directly.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from mfa_radius.core.model import PendingChallenge
from mfa_radius.errors import StoreFull
from mfa_radius.ports import Clock, RequestClaim

_V = TypeVar("_V")

_MIN_TTL = 0.001
"""Shortest TTL in seconds; matches the 1 ms floor of ``RedisChallengeStore`` (PX >= 1)."""

_SWEEP_BUDGET = 8
"""Expired entries dropped per table on each write: more than one write adds, so the backlog
of expired entries shrinks on every write while no single write pays for a large sweep."""

_PURGE_INTERVAL = 1.0
"""Seconds of clock time between two full purges when the store is at capacity: a full store
under attack must not scan every table on every rejected write."""

_OWNER = RequestClaim(owner=True)
_IN_PROGRESS = RequestClaim(owner=False)

_Table = OrderedDict[str, tuple[float, _V]]


_Dropped = Callable[[str, _V], None]
"""Told of each entry a sweep removes (the challenge table keeps its per-user index)."""


def _drop_front_expired(
    table: _Table[_V], now: float, budget: int, dropped: _Dropped[_V] | None = None
) -> None:
    """Pop up to ``budget`` expired entries from the front of ``table``."""
    while budget and table:
        key = next(iter(table))
        expires, value = table[key]
        if expires > now:
            return
        del table[key]
        if dropped is not None:
            dropped(key, value)
        budget -= 1


def _drop_all_expired(table: _Table[_V], now: float, dropped: _Dropped[_V] | None = None) -> None:
    """Remove every expired entry, wherever it sits (O(n); used only when full)."""
    for key in [k for k, (expires, _) in table.items() if expires <= now]:
        _, value = table.pop(key)
        if dropped is not None:
            dropped(key, value)


def _check_timeout(timeout: float) -> None:
    """Reject a wait without an end: every wait of the proxy has a deadline."""
    if not math.isfinite(timeout):
        raise ValueError("timeout must be a finite number of seconds")


def _expiry(now: float, ttl: float) -> float:
    """Return the absolute expiry for ``ttl`` seconds from ``now``, with the 1 ms floor."""
    if not math.isfinite(ttl):
        raise ValueError("ttl must be a finite number of seconds")
    return now + (ttl if ttl > _MIN_TTL else _MIN_TTL)


class MemoryChallengeStore:
    """The store ports (``ports.SharedState``) in process memory for a single node.

    Args:
        clock: source of the current time; entries expire against it.
        max_entries: the most live entries (challenges, marks, counters, results and cached
            replies together) the store holds before writes fail; bounds memory at about
            0.25-0.4 KiB per entry (measured with 32-hex-digit keys: a mark, a challenge with
            one attribute).
        max_challenges_per_user: the most pending challenges one user holds; storing one
            more removes that user's oldest.

    Raises:
        ValueError: ``max_entries`` or ``max_challenges_per_user`` is below one.
    """

    def __init__(
        self, clock: Clock, *, max_entries: int = 1_000_000, max_challenges_per_user: int = 5
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_challenges_per_user < 1:
            raise ValueError("max_challenges_per_user must be at least 1")
        self._clock = clock
        self._max_entries = max_entries
        self._per_user = max_challenges_per_user
        self._challenges: _Table[PendingChallenge] = OrderedDict()
        # username -> that user's challenge keys, oldest first (a dict is insertion-ordered).
        self._user_keys: dict[str, dict[str, None]] = {}
        self._marks: _Table[None] = OrderedDict()
        self._requests: _Table[bytes | None] = OrderedDict()
        self._counters: _Table[int] = OrderedDict()
        self._results: _Table[str] = OrderedDict()
        self._waiters: dict[str, set[asyncio.Future[str | None]]] = {}
        self._next_purge = -math.inf

    def __len__(self) -> int:
        """Return how many entries are held, including expired ones not yet dropped."""
        return (
            len(self._challenges)
            + len(self._marks)
            + len(self._requests)
            + len(self._counters)
            + len(self._results)
        )

    async def put_challenge(self, key: str, record: PendingChallenge, ttl: float) -> None:
        """Store a pending challenge under ``key`` for ``ttl`` seconds (overwrites).

        A new key for a user who holds ``max_challenges_per_user`` live challenges first
        removes that user's oldest; overwriting a live key of the same user keeps its place.

        Raises:
            StoreFull: the store holds ``max_entries`` live entries.
        """
        now = self._clock.now()
        user = record.username
        old = self._challenges.get(key)
        if old is not None and (old[0] <= now or old[1].username != user):
            self._unindex(key, old[1])  # a new challenge under a dead (or foreign) key
            old = None
        keys = self._user_keys.get(user)
        if old is None and keys is not None:
            self._make_user_room(keys, now)
            if not keys:
                del self._user_keys[user]
        self._insert(self._challenges, key, (_expiry(now, ttl), record), now)
        if old is None:
            self._user_keys.setdefault(user, {})[key] = None

    async def get_challenge(self, key: str) -> PendingChallenge | None:
        """Return the pending challenge under ``key`` without consuming it, or None."""
        entry = self._challenges.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.now():
            del self._challenges[key]
            self._unindex(key, entry[1])
            return None
        return entry[1]

    async def take_challenge(self, key: str) -> PendingChallenge | None:
        """Remove and return the challenge: exactly one caller gets it.

        Returns:
            The challenge, or None when it is absent, expired or already taken.
        """
        entry = self._challenges.pop(key, None)
        if entry is None:
            return None
        self._unindex(key, entry[1])
        if entry[0] <= self._clock.now():
            return None
        return entry[1]

    async def add_attempt(self, key: str) -> int | None:
        """Count one wrong code on the challenge, keeping its expiry.

        Returns:
            The new attempt count, or None when the challenge is gone.
        """
        entry = self._challenges.get(key)
        if entry is None:
            return None
        expires, record = entry
        if expires <= self._clock.now():
            del self._challenges[key]
            self._unindex(key, record)
            return None
        attempts = record.attempts + 1
        # Assigning to an existing key keeps its place, and the expiry is unchanged, so the
        # table stays ordered by expiry (the KEEPTTL of the Redis store).
        self._challenges[key] = (expires, replace(record, attempts=attempts))
        return attempts

    async def mark_once(self, key: str, ttl: float) -> bool:
        """Set a mark that exists for ``ttl`` seconds.

        Returns:
            True for the first caller; False while the mark exists.

        Raises:
            StoreFull: the store is full.
        """
        now = self._clock.now()
        entry = self._marks.get(key)
        if entry is not None and entry[0] > now:
            return False
        self._insert(self._marks, key, (_expiry(now, ttl), None), now)
        return True

    async def claim_request(self, key: str, ttl: float) -> RequestClaim:
        """Claim a request for processing (RFC 5080 §2.2.2 duplicate detection).

        Returns:
            ``owner=True`` for the first claimant; otherwise the stored reply, or None while
            the owner is still working on it.

        Raises:
            StoreFull: the store is full.
        """
        now = self._clock.now()
        entry = self._requests.get(key)
        if entry is not None and entry[0] > now:
            reply = entry[1]
            return _IN_PROGRESS if reply is None else RequestClaim(owner=False, reply=reply)
        self._insert(self._requests, key, (_expiry(now, ttl), None), now)
        return _OWNER

    async def store_reply(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep the reply of a claimed request so that duplicates get the same bytes.

        Raises:
            StoreFull: the store is full.
        """
        now = self._clock.now()
        self._insert(self._requests, key, (_expiry(now, ttl), reply), now)

    async def release_request(self, key: str) -> None:
        """End a claim that produced no reply: the next retransmission is worked on again."""
        entry = self._requests.get(key)
        if entry is not None and entry[1] is None:
            del self._requests[key]

    async def count(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first hit.

        Later hits do not extend the window, so a steady trickle of failures cannot keep a
        lock-out alive forever.

        Returns:
            The counter's value after this hit (1 for the first).

        Raises:
            StoreFull: a new counter would exceed ``max_entries``.
        """
        now = self._clock.now()
        entry = self._counters.get(key)
        if entry is not None and entry[0] > now:
            value = entry[1] + 1
            # Assigning to an existing key keeps its place and expiry: the table stays ordered.
            self._counters[key] = (entry[0], value)
            return value
        self._insert(self._counters, key, (_expiry(now, window), 1), now)
        return 1

    async def uncount(self, key: str) -> int:
        """Take one back from a counter, never below zero, keeping its expiry.

        Returns:
            The counter's value after this (0 when absent or expired; nothing is created).
        """
        entry = self._counters.get(key)
        if entry is None:
            return 0
        expires, value = entry
        if expires <= self._clock.now():
            del self._counters[key]
            return 0
        value = max(value - 1, 0)
        # Assigning to an existing key keeps its place and expiry: the table stays ordered.
        self._counters[key] = (expires, value)
        return value

    async def peek_count(self, key: str) -> int:
        """Return a counter's value without changing it (0 when absent or expired)."""
        entry = self._counters.get(key)
        if entry is None:
            return 0
        if entry[0] <= self._clock.now():
            del self._counters[key]
            return 0
        return entry[1]

    async def delete(self, *keys: str) -> None:
        """Remove the counters and marks named by ``keys`` (``mfa-radius user unlock``).

        Both kinds go, because an unlock must clear the failure counter and any lock-out mark
        kept under the same key; keys that do not exist are ignored.
        """
        for key in keys:
            self._counters.pop(key, None)
            self._marks.pop(key, None)

    async def publish_result(self, key: str, value: str, ttl: float) -> None:
        """Record the result of an out-of-band step and wake every waiter on ``key``.

        Raises:
            StoreFull: a new result would exceed ``max_entries``.
        """
        now = self._clock.now()
        self._insert(self._results, key, (_expiry(now, ttl), value), now)
        for waiter in self._waiters.get(key, ()):
            if not waiter.done():
                waiter.set_result(value)

    async def wait_result(self, key: str, timeout: float) -> str | None:  # noqa: ASYNC109 - the port's signature
        """Wait up to ``timeout`` seconds (event-loop time) for :meth:`publish_result` on ``key``.

        Returns:
            The value, or None when nothing was published in time or the store was closed.
            A live value published before the wait began is returned at once.

        Raises:
            ValueError: ``timeout`` is not finite.
        """
        _check_timeout(timeout)
        entry = self._results.get(key)
        if entry is not None:
            if entry[0] > self._clock.now():
                return entry[1]
            del self._results[key]
        if timeout <= 0:
            return None
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(key, set())
        waiters.add(waiter)
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[key]
        return waiter.result() if waiter.done() else None

    async def ping(self) -> None:
        """Return at once: process memory is always there."""

    async def close(self) -> None:
        """Drop every entry and end every wait with None (the node is shutting down)."""
        self._challenges.clear()
        self._user_keys.clear()
        self._marks.clear()
        self._requests.clear()
        self._counters.clear()
        self._results.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _insert(self, table: _Table[_V], key: str, entry: tuple[float, _V], now: float) -> None:
        """Write ``entry`` at the back of ``table``, sweeping and enforcing the capacity."""
        _drop_front_expired(self._challenges, now, _SWEEP_BUDGET, self._unindex)
        _drop_front_expired(self._marks, now, _SWEEP_BUDGET)
        _drop_front_expired(self._requests, now, _SWEEP_BUDGET)
        _drop_front_expired(self._counters, now, _SWEEP_BUDGET)
        _drop_front_expired(self._results, now, _SWEEP_BUDGET)
        # Re-inserting moves a rewritten key to the back: its new expiry is the latest.
        if table.pop(key, None) is None and len(self) >= self._max_entries:
            self._make_room(now)
        table[key] = entry

    def _make_room(self, now: float) -> None:
        """Purge expired entries anywhere, or raise when every held entry is still live."""
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_INTERVAL
            _drop_all_expired(self._challenges, now, self._unindex)
            _drop_all_expired(self._marks, now)
            _drop_all_expired(self._requests, now)
            _drop_all_expired(self._counters, now)
            _drop_all_expired(self._results, now)
        if len(self) >= self._max_entries:
            raise StoreFull("memory", "full")

    def _make_user_room(self, keys: dict[str, None], now: float) -> None:
        """Free a slot among one user's challenges: drop the dead ones, then the oldest."""
        for key in [k for k in keys if self._challenges[k][0] <= now]:
            del keys[key]
            del self._challenges[key]
        while len(keys) >= self._per_user:
            oldest = next(iter(keys))
            del keys[oldest]
            del self._challenges[oldest]

    def _unindex(self, key: str, record: PendingChallenge) -> None:
        """Forget ``key`` in its user's index (the challenge itself is already gone)."""
        keys = self._user_keys.get(record.username)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._user_keys[record.username]
