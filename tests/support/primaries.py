"""Password-backend test parts: a stand-in upstream, a counting executor, a request builder.

``StaticPrimary`` implements PrimaryAuthenticator for an outside password owner.

It plays the outside system that owns the password (NPS, FreeRADIUS, a directory): it
accepts one password and grants fixed reply attributes, so the tests can follow those
attributes through the challenge round.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from mfa_radius.core.model import (
    AuthAttempt,
    PrimaryAccept,
    PrimaryReject,
    PrimaryResult,
    RejectReason,
)
from mfa_radius.errors import PrimaryUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def attempt(username: str) -> AuthAttempt:
    """A first-round request from a test NAS for ``username`` (the password is passed apart)."""
    return AuthAttempt(
        username=username,
        raw_username=username,
        password=None,
        state=None,
        client="vpn",
        src_ip="192.0.2.10",
    )


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts the jobs handed to it (blocking backend work)."""

    def __init__(self) -> None:
        super().__init__(max_workers=2, thread_name_prefix="test-backend")
        self.jobs = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Count and run one job."""
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


class StaticPrimary:
    """Accepts ``password`` for every user, granting ``attributes``; counts its calls.

    Args:
        password: the one accepted password.
        attributes: reply attributes granted on accept.
    """

    def __init__(self, password: bytes, attributes: tuple[tuple[int, bytes], ...] = ()) -> None:
        self.password = password
        self.attributes = attributes
        self.calls = 0
        self.down = False

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Accept the configured password; raise PrimaryUnavailable while ``down``."""
        self.calls += 1
        if self.down:
            raise PrimaryUnavailable("static", "down")
        if password == self.password:
            return PrimaryAccept(self.attributes)
        return PrimaryReject(RejectReason.BAD_PASSWORD)
