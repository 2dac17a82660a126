"""The login orchestration: primary check, enrolment lookup, challenge, code check.

``Authenticator`` runs one Access-Request through the decisions of ``core.flow``, doing the
I/O between them through the ports. Every await has a deadline: a backend that hangs turns
into the client's fail mode, never a silent NAS. Randomness (State values) is drawn here,
from ``secrets``; ``core`` only formats and compares.

Audit fields learnt on the way (user id, display name, factor, state id) are bound to the
request's structlog context so that the server's ``request_finished`` line carries them.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from mfa_radius import logs
from mfa_radius.core import flow, otp, policy
from mfa_radius.core.model import (
    Attribute,
    AuthAttempt,
    Factor,
    Mode,
    Outcome,
    PendingChallenge,
    PrimaryAccept,
    PrimaryChallenge,
    PrimaryResult,
    Reject,
    RejectReason,
    User,
)
from mfa_radius.core.policy import ClientPolicy
from mfa_radius.deadlines import Deadlines
from mfa_radius.errors import (
    BackendError,
    EnrolmentUnavailable,
    PrimaryUnavailable,
    StoreUnavailable,
)
from mfa_radius.ports import ChallengeStore, Clock, PrimaryAuthenticator, UserLookup

log = structlog.get_logger("mfa_radius.service")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines, in seconds, for one call to each backend.

    Attributes:
        store: one challenge-store operation.
        enrolment: one enrolment-database lookup.
        primary: one primary password check.
    """

    store: float = 1.0
    enrolment: float = 2.0
    primary: float = 5.0


@dataclass(frozen=True, slots=True)
class Profile:
    """What one client (NAS) gets: its decision settings and its password backend.

    Attributes:
        policy: the client's decision settings.
        primary: the password backend.
    """

    policy: ClientPolicy
    primary: PrimaryAuthenticator


class NoPrimary:
    """``primary = "none"``: the NAS already checked the password; accept any."""

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Accept without looking at the password."""
        return PrimaryAccept()


class _Progress:
    """What one request has established so far, for the fail-mode decision on a timeout."""

    __slots__ = ("attributes", "primary_verified")

    def __init__(self) -> None:
        self.primary_verified = False
        self.attributes: tuple[Attribute, ...] = ()


class Authenticator:
    """Decides Access-Requests.

    Args:
        users: finds users and their tokens (the enrolment database, batched).
        store: pending challenges and replay marks, shared by the cluster.
        clock: the time source (epoch seconds).
        timeouts: per-backend deadlines.
        new_state: source of fresh State values; 16 bytes from ``secrets`` by default.
        deadlines: the shared deadline timer (one per event loop).
    """

    def __init__(
        self,
        *,
        users: UserLookup,
        store: ChallengeStore,
        clock: Clock,
        timeouts: Timeouts,
        new_state: Callable[[], bytes] | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self._deadlines = deadlines or Deadlines()
        self._users = users
        self._store = store
        self._clock = clock
        self._timeouts = timeouts
        self._new_state = new_state or (lambda: secrets.token_bytes(flow.STATE_BYTES))

    async def authenticate(self, attempt: AuthAttempt, profile: Profile) -> Outcome:
        """Decide one Access-Request within the client's response window.

        The whole decision runs under one deadline (the client's ``response_window`` less a
        margin for sending): when it passes, the client's fail mode decides (RFC 5080 §2.2.1:
        a late answer is a lost answer, since the NAS has already retransmitted or failed over).

        Args:
            attempt: the request.
            profile: the client's policy and password backend.

        Returns:
            Accept, Reject or ChallengeReply.
        """
        progress = _Progress()
        budget = _answer_budget(profile.policy.response_window)
        try:
            with self._deadlines.limit(budget):
                if attempt.state is None:
                    return await self._first_round(attempt, profile, progress)
                return await self._second_round(attempt, attempt.state, profile, progress)
        except TimeoutError:
            log.warning("backend_failed", backend="response_window", error="TimeoutError")
            return policy.on_backend_failure(
                RejectReason.TIMEOUT,
                profile.policy,
                primary_verified=progress.primary_verified,
                attributes=progress.attributes,
            )

    async def _first_round(
        self, attempt: AuthAttempt, profile: Profile, progress: _Progress
    ) -> Outcome:
        pol = profile.policy
        logs.note(mode=pol.mode.value)
        if not attempt.password:
            return Reject(RejectReason.MISSING_PASSWORD)
        password, code = attempt.password, None
        if pol.mode is Mode.APPEND:
            split = otp.split_appended(attempt.password, pol.append_delimiter, digits=6)
            if split is not None:
                password, code = split
        return await self._primary_step(attempt, profile, progress, password, code, None)

    async def _primary_step(
        self,
        attempt: AuthAttempt,
        profile: Profile,
        progress: _Progress,
        password: bytes,
        code: str | None,
        upstream_state: bytes | None,
    ) -> Outcome:
        """Check the password (or the answer to an upstream challenge), then go on."""
        pol = profile.policy
        try:
            primary = await self._call(
                profile.primary.verify(attempt, password, upstream_state=upstream_state),
                self._timeouts.primary,
                "primary",
            )
        except (PrimaryUnavailable, TimeoutError):
            return Reject(RejectReason.PRIMARY_UNAVAILABLE)
        rejected = flow.after_primary(primary, pol)
        if rejected is not None:
            return rejected
        if isinstance(primary, PrimaryChallenge):
            return await self._relay(attempt, pol, primary)
        assert isinstance(primary, PrimaryAccept)  # noqa: S101 (after_primary ruled out Reject)
        progress.primary_verified = True
        progress.attributes = attrs = primary.attributes
        if primary.identity is not None:
            logs.note(display_name=primary.identity.display_name, email=primary.identity.email)
        decided = flow.after_password(primary, pol, username=attempt.username)
        if decided is not None:
            return decided

        try:
            user = await self._find_user(attempt.username)
        except (EnrolmentUnavailable, TimeoutError):
            return policy.on_backend_failure(
                RejectReason.ENROLMENT_UNAVAILABLE, pol, primary_verified=True, attributes=attrs
            )
        decided = flow.after_enrolment(user, pol, attrs)
        if decided is not None:
            return decided
        assert user is not None  # noqa: S101 (after_enrolment returns a decision for None)
        logs.note(factor=Factor.TOTP.value)

        try:
            if pol.mode is Mode.APPEND:
                return await self._check_appended(user, code, pol, attrs)
            issue = flow.issue_challenge(
                user, pol, attrs, now=self._clock.now(), state=self._new_state()
            )
            await self._put(issue)
        except (StoreUnavailable, TimeoutError):
            return policy.on_backend_failure(
                RejectReason.STORE_UNAVAILABLE, pol, primary_verified=True, attributes=attrs
            )
        return issue.reply

    async def _relay(
        self, attempt: AuthAttempt, pol: ClientPolicy, primary: PrimaryChallenge
    ) -> Outcome:
        """Pass the upstream's own challenge to the NAS under a State of ours."""
        logs.note(factor=Factor.UPSTREAM.value)
        issue = flow.relay_upstream(
            primary,
            pol,
            username=attempt.username,
            now=self._clock.now(),
            state=self._new_state(),
        )
        try:
            await self._put(issue)
        except (StoreUnavailable, TimeoutError):
            return Reject(RejectReason.STORE_UNAVAILABLE)
        return issue.reply

    async def _put(self, issue: flow.IssueChallenge) -> None:
        await self._call(
            self._store.put_challenge(issue.key, issue.record, issue.ttl),
            self._timeouts.store,
            "store",
        )
        logs.note(state_id=issue.key[:8])

    async def _check_appended(
        self, user: User, code: str | None, pol: ClientPolicy, attrs: tuple[Attribute, ...]
    ) -> Outcome:
        if code is None:
            return Reject(RejectReason.BAD_CODE_FORMAT)
        match = otp.check_totp(
            user.tokens,
            code,
            now=self._clock.now(),
            lookback_steps=pol.lookback_steps,
            lookforward_steps=pol.lookforward_steps,
        )
        fresh = match is not None and await self._mark_used(match, pol)
        return flow.after_appended_code(match is not None, fresh, attrs)

    async def _second_round(
        self, attempt: AuthAttempt, state: bytes, profile: Profile, progress: _Progress
    ) -> Outcome:
        key = flow.challenge_key(state)
        pol = profile.policy
        logs.note(state_id=key[:8], mode=pol.mode.value)
        try:
            record = await self._call(self._store.get_challenge(key), self._timeouts.store, "store")
            rejected = flow.check_pending(
                record, username=attempt.username, client=attempt.client, now=self._clock.now()
            )
            if rejected is not None:
                return rejected
            assert record is not None  # noqa: S101 (check_pending rejects None)
            if record.upstream_state:
                taken = await self._call(
                    self._store.take_challenge(key), self._timeouts.store, "store"
                )
                if taken is None:
                    return Reject(RejectReason.UNKNOWN_STATE)
            else:
                return await self._check_code(attempt, state, key, pol, record)
        except (StoreUnavailable, TimeoutError):
            # The password was checked in round one, not in this request: never fail open.
            return Reject(RejectReason.STORE_UNAVAILABLE)
        # The user answered the upstream's own challenge: it goes back upstream, and what the
        # upstream says next is handled like a first answer.
        answer = attempt.password or b""
        return await self._primary_step(
            attempt, profile, progress, answer, None, taken.upstream_state
        )

    async def _check_code(
        self,
        attempt: AuthAttempt,
        state: bytes,
        key: str,
        pol: ClientPolicy,
        record: PendingChallenge,
    ) -> Outcome:
        store_timeout = self._timeouts.store
        logs.note(factor=record.factor.value, attempt=record.attempts + 1)
        try:
            user = await self._find_user(attempt.username)
        except (EnrolmentUnavailable, TimeoutError):
            return Reject(RejectReason.ENROLMENT_UNAVAILABLE)
        if user is None or user.disabled or not user.tokens:
            await self._call(self._store.take_challenge(key), store_timeout, "store")
            return Reject(RejectReason.USER_DISABLED if user else RejectReason.UNKNOWN_USER)

        code = (attempt.password or b"").decode("utf-8", errors="replace").strip()
        match = otp.check_totp(
            user.tokens,
            code,
            now=self._clock.now(),
            lookback_steps=pol.lookback_steps,
            lookforward_steps=pol.lookforward_steps,
        )
        reason = RejectReason.BAD_CODE
        if match is not None:
            if await self._mark_used(match, pol):
                taken = await self._call(self._store.take_challenge(key), store_timeout, "store")
                return flow.after_right_code(taken)
            reason = RejectReason.CODE_REPLAYED
        attempts = await self._call(self._store.add_attempt(key), store_timeout, "store")
        outcome = flow.after_wrong_code(
            attempts, pol, state=state, digits=flow.code_digits(user), reason=reason
        )
        if isinstance(outcome, Reject) and attempts is not None:
            await self._call(self._store.take_challenge(key), store_timeout, "store")
        return outcome

    async def _find_user(self, username: str) -> User | None:
        user = await self._call(
            self._users.find_user(username), self._timeouts.enrolment, "enrolment"
        )
        if user is not None:
            logs.note(user_id=user.user_id, display_name=user.display_name, email=user.email)
        return user

    async def _mark_used(self, match: otp.CodeMatch, pol: ClientPolicy) -> bool:
        """Set the code's replay mark; True when this request is the first to use it."""
        ttl = otp.replay_ttl(match, now=self._clock.now(), lookback_steps=pol.lookback_steps)
        return await self._call(
            self._store.mark_once(otp.replay_key(match), ttl), self._timeouts.store, "store"
        )

    async def _call(self, awaitable: Awaitable[T], deadline: float, backend: str) -> T:
        """Await one backend call under its own deadline; log failures without secrets.

        An in-process store never waits on I/O, so its calls skip the deadline (setting one
        up costs more than the call); the request's overall deadline still bounds them.
        """
        if backend == "store" and not self._store.shared:
            return await awaitable
        try:
            with self._deadlines.limit(deadline):
                return await awaitable
        except TimeoutError:
            log.warning("backend_failed", backend=backend, error="TimeoutError")
            raise
        except BackendError as exc:
            log.warning("backend_failed", backend=exc.backend, error=exc.detail)
            raise


def _answer_budget(response_window: float) -> float:
    """Time the decision may take: the NAS's window less a margin to encode and send."""
    return max(response_window * 0.9, response_window - 0.5)
