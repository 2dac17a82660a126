"""Request deadlines on one shared timer instead of one timer per request.

Every request must be answered within its NAS's response window. ``asyncio.timeout`` gives
each request its own loop timer; under uvloop each of those is a libuv timer started and
stopped per request, which showed as a tenth of the CPU at thousands of requests per second.
Response windows are seconds long, so a resolution of a few tens of milliseconds is plenty:
one repeating timer walks a heap of deadlines and cancels the tasks that ran out of time.
The cancelled task sees ``CancelledError``; :meth:`Deadline.expired` tells it apart from a
shutdown cancel so that it can answer with its fail mode.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType


class Deadline:
    """One task's deadline, as registered with :class:`Deadlines`."""

    __slots__ = ("expired", "finished", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.expired = False
        """True once the task was cancelled because its deadline passed."""
        self.finished = False

    def finish(self) -> None:
        """The task is done with the guarded work: the deadline no longer applies."""
        self.finished = True


class Limit:
    """``with deadlines.limit(seconds):`` - like ``asyncio.timeout``, on the shared timer.

    When the deadline passes, the guarded await is cancelled and ``TimeoutError`` leaves the
    block; a cancellation for another reason (shutdown, an outer limit) passes through.
    """

    __slots__ = ("_deadline", "_deadlines", "_seconds")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._deadline: Deadline | None = None

    def __enter__(self) -> Limit:
        self._deadline = self._deadlines.start(self._seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        deadline = self._deadline
        assert deadline is not None  # noqa: S101 (entered before exit)
        deadline.finish()
        if exc_type is asyncio.CancelledError and deadline.expired:
            deadline.task.uncancel()
            raise TimeoutError from exc


class Deadlines:
    """A heap of task deadlines, checked by one repeating timer.

    Args:
        resolution: seconds between checks; a task may overrun its deadline by this much.
    """

    def __init__(self, resolution: float = 0.025) -> None:
        self._resolution = resolution
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count().__next__
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def start(self, seconds: float) -> Deadline:
        """Give the current task ``seconds`` to finish the guarded work.

        Raises:
            RuntimeError: when called outside a task.
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadlines apply to tasks")
        loop = asyncio.get_running_loop()
        deadline = Deadline(task, loop.time() + seconds)
        heapq.heappush(self._heap, (deadline.when, self._seq(), deadline))
        if self._timer is None:
            self._timer = loop.call_later(self._resolution, self._check)
        return deadline

    def limit(self, seconds: float) -> Limit:
        """A ``with`` block that raises ``TimeoutError`` when it takes longer than ``seconds``."""
        return Limit(self, seconds)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and (heap[0][2].finished or heap[0][0] <= now):
            _, _, deadline = heapq.heappop(heap)
            if not deadline.finished and not deadline.task.done():
                deadline.expired = True
                deadline.task.cancel()
        self._timer = loop.call_later(self._resolution, self._check) if heap else None

    def close(self) -> None:
        """Stop the timer (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
