"""Coalesce concurrent user lookups into batched queries (a DataLoader for the enrolment DB).

Every login looks its user up in the enrolment database, on the request path. One query per
login costs a round trip each (with aiosqlite, several hand-offs to the connection's thread:
hundreds of microseconds), which caps a node at a few thousand lookups per second. Under load
many logins wait for a lookup at the same moment, so they share one ``IN (...)`` query:
lookups that arrive while a batch is running form the next batch. At low load a lookup still
runs at once (a batch of one), so nothing waits for a timer.

The lookup is never skipped or cached: every login reads what the database holds now, so a
disabled user or a removed token takes effect on the next request.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from mfa_radius.core.model import User


class BatchSource(Protocol):
    """A store that can look many users up in one query."""

    async def find_users(self, usernames: list[str]) -> dict[str, User]:
        """Return the enrolled users among ``usernames``, by username."""
        ...


class BatchedUserLookup:
    """``find_user`` for the login path, backed by batched ``find_users`` queries.

    Args:
        source: the enrolment store.
        max_batch: most usernames in one query.
        max_concurrent: most batch queries running at once (the reader pool's size is a good
            bound); further lookups wait and join the next batch.
    """

    def __init__(
        self, source: BatchSource, *, max_batch: int = 256, max_concurrent: int = 2
    ) -> None:
        self._source = source
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._waiting: dict[str, list[asyncio.Future[User | None]]] = {}
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def find_user(self, username: str) -> User | None:
        """Return the user with their tokens, or None; shares a query with concurrent callers.

        Raises:
            EnrolmentUnavailable: the batch's query failed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[User | None] = loop.create_future()
        self._waiting.setdefault(username, []).append(future)
        if not self._scheduled and self._running < self._max_concurrent:
            # Let the other requests of this loop iteration join before the query starts.
            self._scheduled = True
            loop.call_soon(self._start_batch)
        return await future

    def _start_batch(self) -> None:
        self._scheduled = False
        while self._waiting and self._running < self._max_concurrent:
            names = list(self._waiting)[: self._max_batch]
            batch = {name: self._waiting.pop(name) for name in names}
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[str, list[asyncio.Future[User | None]]]) -> None:
        try:
            users = await self._source.find_users(list(batch))
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 (handed to every waiting caller)
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for name, futures in batch.items():
                user = users.get(name)
                for future in futures:
                    if not future.done():
                        future.set_result(user)
        finally:
            self._running -= 1
            if self._waiting and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._start_batch)
