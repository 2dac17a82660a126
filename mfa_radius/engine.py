"""The effect runner: drives the pure login engine through the ports, under deadlines.

``core.login.Login`` decides; this module performs what it asks for and feeds the results
back, until a decision comes out. Every backend call has a deadline: the password backend,
the enrolment database and the provider each get their own (``Timeouts``), and the whole
request runs under the client's response window less a margin (RFC 5080 §2.2.1: a late answer
is a lost answer, since the NAS has already retransmitted or failed over). When the window
runs out the engine's fail mode decides (``Login.expire``).

The store ports get no deadline here: an in-process store never waits, so its calls run
without extra tasks or timers, and a network store bounds each of its calls itself. Failures
come back to the engine as ``effects.Failed`` values and are logged once, here, with the
request's own fields (the logger is passed in, never found in a context variable). A store that
is full (``errors.StoreFull``: the memory store at ``max_entries``, Redis at ``maxmemory``)
comes back as ``Failed(full=True)``, which the engine rejects whatever the fail mode. Random
values are drawn here, from ``secrets``.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from structlog.typing import FilteringBoundLogger

from mfa_radius.core.challenges import STATE_BYTES
from mfa_radius.core.effects import (
    AddAttempt,
    Backend,
    CheckPassword,
    Count,
    Effect,
    Failed,
    FindUser,
    Forget,
    GetChallenge,
    MarkOnce,
    PeekCount,
    PutChallenge,
    Send,
    TakeChallenge,
    Uncount,
    WaitResult,
)
from mfa_radius.core.login import Decision, Fresh, Login, Settings
from mfa_radius.core.model import AuthAttempt, PrimaryAccept, PrimaryResult
from mfa_radius.core.policy import ClientPolicy
from mfa_radius.deadlines import Deadlines
from mfa_radius.errors import BackendError, DeliveryFailed, StoreFull
from mfa_radius.ports import (
    Challenges,
    Clock,
    Marks,
    MessageSender,
    PrimaryAuthenticator,
    ResultBus,
    UserLookup,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines, in seconds, for one call to each backend that does I/O here.

    Attributes:
        enrolment: one enrolment-database lookup.
        primary: one primary password check.
        delivery: one request to the SMS/voice provider.
    """

    enrolment: float = 2.0
    primary: float = 5.0
    delivery: float = 5.0


@dataclass(frozen=True, slots=True)
class Profile:
    """What one client (NAS) gets: its decision settings and its password backend.

    Attributes:
        policy: the client's decision settings.
        primary: the password backend.
    """

    policy: ClientPolicy
    primary: PrimaryAuthenticator


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports the engine's effects go through.

    Attributes:
        users: finds users and their tokens.
        challenges: pending challenges.
        marks: replay marks, send counters and the lockout.
        results: approve-call results.
        sender: the SMS/voice provider; None when none is configured.
    """

    users: UserLookup
    challenges: Challenges
    marks: Marks
    results: ResultBus
    sender: MessageSender | None = None


class NoPrimary:
    """``primary = "none"``: the NAS already checked the password; accept any."""

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Accept without looking at the password."""
        return PrimaryAccept()


def draw_fresh() -> Fresh:
    """Random values for one request: a State, digits for a sent code, an approve token."""
    return Fresh(
        state=secrets.token_bytes(STATE_BYTES),
        digits=f"{secrets.randbelow(10**_DIGITS):0{_DIGITS}d}",
        token=secrets.token_urlsafe(16),
    )


_DIGITS = 12
"""Random digits drawn per request: more than the longest configurable sent code."""


def answer_budget(response_window: float) -> float:
    """Time the decision may take: the NAS's window less a margin to encode and send."""
    return max(response_window * 0.9, response_window - 0.5)


class Engine:
    """Decides Access-Requests by running :class:`~mfa_radius.core.login.Login`.

    Args:
        ports: the ports effects go through.
        settings: the cluster-wide engine settings.
        clock: the time source (epoch seconds).
        timeouts: per-backend deadlines.
        deadlines: the shared deadline timer (one per event loop).
        fresh: source of random values; :func:`draw_fresh` by default.
    """

    def __init__(
        self,
        *,
        ports: Ports,
        settings: Settings,
        clock: Clock,
        timeouts: Timeouts,
        deadlines: Deadlines | None = None,
        fresh: Callable[[], Fresh] = draw_fresh,
    ) -> None:
        self._ports = ports
        self._settings = settings
        self._clock = clock
        self._timeouts = timeouts
        self._deadlines = deadlines or Deadlines()
        self._fresh = fresh

    async def decide(
        self, attempt: AuthAttempt, profile: Profile, log: FilteringBoundLogger
    ) -> Decision:
        """Decide one Access-Request within the client's response window.

        Args:
            attempt: the request.
            profile: the client's policy and password backend.
            log: a logger bound to the request's fields, for backend failures.

        Returns:
            The outcome with its audit record.
        """
        budget = answer_budget(profile.policy.response_window)
        now = self._clock.now()
        login = Login(
            attempt,
            profile.policy,
            self._settings,
            now=now,
            deadline=now + budget,
            fresh=self._fresh(),
        )
        step = login.start()
        if isinstance(step, Decision):
            return step
        try:
            with self._deadlines.limit(budget):
                while not isinstance(step, Decision):
                    step = login.send(await self._perform(step, attempt, profile, log))
        except TimeoutError:
            log.warning("backend_failed", backend="response_window", error="TimeoutError")
            return login.expire()
        return step

    async def _perform(
        self,
        effect: Effect[Any],
        attempt: AuthAttempt,
        profile: Profile,
        log: FilteringBoundLogger,
    ) -> object:
        """Run one effect; a backend failure or timeout comes back as ``Failed``."""
        ports = self._ports
        try:
            match effect:
                case CheckPassword(password=password, upstream_state=upstream_state):
                    return await self._bounded(
                        profile.primary.verify(attempt, password, upstream_state=upstream_state),
                        self._timeouts.primary,
                    )
                case FindUser(username=username):
                    return await self._bounded(
                        ports.users.find_user(username), self._timeouts.enrolment
                    )
                case GetChallenge(key=key):
                    return await ports.challenges.get_challenge(key)
                case PutChallenge(key=key, record=record, ttl=ttl):
                    await ports.challenges.put_challenge(key, record, ttl)
                    return None
                case TakeChallenge(key=key):
                    return await ports.challenges.take_challenge(key)
                case AddAttempt(key=key):
                    return await ports.challenges.add_attempt(key)
                case MarkOnce(key=key, ttl=ttl):
                    return await ports.marks.mark_once(key, ttl)
                case Count(key=key, window=window):
                    return await ports.marks.count(key, window)
                case Uncount(key=key):
                    return await ports.marks.uncount(key)
                case PeekCount(key=key):
                    return await ports.marks.peek_count(key)
                case Forget(keys=keys):
                    await ports.marks.delete(*keys)
                    return None
                case Send(message=message):
                    if ports.sender is None:
                        return Failed(Backend.DELIVERY, "no SMS/voice provider is configured")
                    return await self._bounded(ports.sender.send(message), self._timeouts.delivery)
                case WaitResult(token=token, until=until):
                    return await ports.results.wait_result(
                        token, max(until - self._clock.now(), 0.0)
                    )
                case _:
                    raise TypeError(f"unknown effect {type(effect).__name__}")
        except TimeoutError:
            log.warning("backend_failed", backend=effect.backend.value, error="TimeoutError")
            # A send that ran out of time may still have gone out.
            return Failed(effect.backend, "timeout", maybe_sent=isinstance(effect, Send))
        except DeliveryFailed as exc:
            log.warning("backend_failed", backend=exc.backend, error=exc.detail)
            return Failed(
                Backend.DELIVERY,
                exc.detail,
                permanent=exc.permanent,
                code=exc.code,
                maybe_sent=exc.maybe_sent,
            )
        except StoreFull as exc:
            # Before BackendError: StoreFull is a StoreUnavailable, but never a fail-mode case.
            log.warning("backend_failed", backend=exc.backend, error=exc.detail)
            return Failed(effect.backend, exc.detail, full=True)
        except BackendError as exc:
            log.warning("backend_failed", backend=exc.backend, error=exc.detail)
            return Failed(effect.backend, exc.detail)

    async def _bounded(self, call: Awaitable[T], seconds: float) -> T:
        with self._deadlines.limit(seconds):
            return await call


__all__ = ["Engine", "NoPrimary", "Ports", "Profile", "Timeouts", "draw_fresh"]
