"""The effects the login engine asks for, and how a failed one comes back.

The engine (``core/login.py``) never performs I/O: it returns one of these values and is
called again with the effect's result. ``engine.py`` runs each effect through its port under a
deadline. Each effect names the type of its result (``Effect[R]``), so the engine's
``ask`` helper is typed end to end; a backend that failed or ran out of time answers with
:class:`Failed` instead, which the engine turns into the client's fail mode, except for a
store that is full (``Failed.full``): that is always a rejection (``store_full``).
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar, cast

from mfa_radius.core.messages import Delivery, Message
from mfa_radius.core.model import PendingChallenge, PrimaryResult, User

R = TypeVar("R")
T = TypeVar("T")


class Backend(enum.StrEnum):
    """Which dependency an effect uses (the ``backend`` of a ``backend_failed`` line)."""

    PRIMARY = "primary"  #: the password backend
    ENROLMENT = "enrolment"  #: the enrolment database
    STORE = "store"  #: the shared challenge store
    DELIVERY = "delivery"  #: the SMS / voice provider


@dataclass(frozen=True, slots=True)
class Effect(Generic[R]):
    """Base of every effect; ``R`` is the type of its result."""

    @property
    def backend(self) -> Backend:
        """The dependency this effect uses."""
        return Backend.STORE


@dataclass(frozen=True, slots=True)
class CheckPassword(Effect[PrimaryResult]):
    """Check the password (or an answer to the upstream's own challenge) with the primary."""

    password: bytes = field(repr=False)
    upstream_state: bytes | None = None

    @property
    def backend(self) -> Backend:
        """The password backend."""
        return Backend.PRIMARY


@dataclass(frozen=True, slots=True)
class FindUser(Effect[User | None]):
    """Look the user and their enrolled factors up."""

    username: str

    @property
    def backend(self) -> Backend:
        """The enrolment database."""
        return Backend.ENROLMENT


@dataclass(frozen=True, slots=True)
class PutChallenge(Effect[None]):
    """Store a pending challenge under its key for ``ttl`` seconds."""

    key: str
    record: PendingChallenge
    ttl: float


@dataclass(frozen=True, slots=True)
class GetChallenge(Effect[PendingChallenge | None]):
    """Read a pending challenge without consuming it."""

    key: str


@dataclass(frozen=True, slots=True)
class TakeChallenge(Effect[PendingChallenge | None]):
    """Consume a pending challenge: exactly one request on any node gets it."""

    key: str


@dataclass(frozen=True, slots=True)
class AddAttempt(Effect[int | None]):
    """Count a wrong answer on a pending challenge."""

    key: str


@dataclass(frozen=True, slots=True)
class MarkOnce(Effect[bool]):
    """Set a one-time mark (TOTP replay, send cool-down); True for the first caller."""

    key: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Count(Effect[int]):
    """Add one to a windowed counter; the result is its new value."""

    key: str
    window: float


@dataclass(frozen=True, slots=True)
class Uncount(Effect[int]):
    """Take one back from a windowed counter (never below zero, its window unchanged).

    The result is its new value (0 when the counter is absent or expired).
    """

    key: str


@dataclass(frozen=True, slots=True)
class PeekCount(Effect[int]):
    """Read a counter without changing it."""

    key: str


@dataclass(frozen=True, slots=True)
class Forget(Effect[None]):
    """Remove counters or marks."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Send(Effect[Delivery]):
    """Hand one text message or call to the provider (never retried)."""

    message: Message

    @property
    def backend(self) -> Backend:
        """The SMS / voice provider."""
        return Backend.DELIVERY


@dataclass(frozen=True, slots=True)
class WaitResult(Effect[str | None]):
    """Wait for an out-of-band result (an approve call's keypress) until ``until``.

    ``until`` is epoch seconds on the engine's clock; the runner waits the time left.
    """

    token: str = field(repr=False)
    until: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The answer of an effect whose backend failed or did not answer in time.

    Attributes:
        backend: which dependency failed.
        detail: a non-secret description (an exception class name, ``timeout``).
        permanent: for delivery: the provider refused the number (a retry cannot help).
        code: for delivery: the provider's error code, when it gave one.
        maybe_sent: for delivery: the request reached the provider but its fate is unknown
            (no answer in time), so the message may have gone out.
        full: for the store: it is at capacity and refused a new entry
            (:class:`mfa_radius.errors.StoreFull`). Never answered with the fail mode.
    """

    backend: Backend
    detail: str = ""
    permanent: bool = False
    code: int | None = None
    maybe_sent: bool = False
    full: bool = False


Steps: TypeAlias = Generator[Effect[Any], object, T]
"""A piece of login logic: yields effects, receives their results, returns a ``T``."""


class BackendFailure(Exception):
    """Raised inside the engine when an effect answered :class:`Failed`.

    It never leaves ``core``: the engine catches it where the fail mode is decided, exactly
    where an orchestration would catch a ``BackendError``.
    """

    def __init__(self, failed: Failed) -> None:
        super().__init__(failed.backend.value)
        self.failed = failed


def ask(effect: Effect[R]) -> Steps[R]:
    """Yield one effect and return its result; a :class:`Failed` answer raises.

    Raises:
        BackendFailure: the effect's backend failed or timed out.
    """
    result = yield effect
    if isinstance(result, Failed):
        raise BackendFailure(result)
    return cast(R, result)
