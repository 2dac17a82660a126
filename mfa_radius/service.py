"""The login orchestration: primary check, enrolment lookup, challenge, code check.

``Authenticator`` runs one Access-Request through the decisions of ``core.flow``, doing the
I/O between them through the ports. Every await has a deadline: a backend that hangs turns
into the client's fail mode, never a silent NAS. Randomness (State values) is drawn here,
from ``secrets``; ``core`` only formats and compares.

Audit fields learnt on the way (user id, display name, factor, state id, phone tail) go into
the request's audit fields (``logs.note``) so that the server's ``request_finished`` line
carries them. Text messages, calls, limits and the lockout are ``dispatch.PhoneFactors``'.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from mfa_radius import logs
from mfa_radius.core import factors, flow, limits, otp, policy
from mfa_radius.core.model import (
    Accept,
    Attribute,
    AuthAttempt,
    ChallengeReply,
    Factor,
    Identity,
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
from mfa_radius.dispatch import PhoneFactors, PhoneSettings
from mfa_radius.errors import (
    DeliveryFailed,
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

    __slots__ = ("attributes", "ends", "primary_verified")

    def __init__(self, ends: float) -> None:
        self.primary_verified = False
        self.attributes: tuple[Attribute, ...] = ()
        self.ends = ends
        """Loop time by which the answer must be decided."""


class Authenticator:
    """Decides Access-Requests.

    Args:
        users: finds users and their tokens (the enrolment database, batched).
        store: pending challenges and replay marks, shared by the cluster.
        clock: the time source (epoch seconds).
        timeouts: per-backend deadlines.
        new_state: source of fresh State values; 16 bytes from ``secrets`` by default.
        deadlines: the shared deadline timer (one per event loop).
        phones: text, call and approve factors with their limits; None without a provider
            (the lockout for wrong codes then uses default settings).
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
        phones: PhoneFactors | None = None,
    ) -> None:
        self._deadlines = deadlines or Deadlines()
        self._phones = phones or PhoneFactors(
            sender=None,
            store=store,
            clock=clock,
            settings=PhoneSettings(
                send_limits=limits.SendLimits(),
                lockout=limits.Lockout(),
                code_key=secrets.token_bytes(32),
            ),
            deadlines=self._deadlines,
            store_timeout=timeouts.store,
            send_timeout=timeouts.primary,
        )
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
        budget = _answer_budget(profile.policy.response_window)
        progress = _Progress(asyncio.get_running_loop().time() + budget)
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
        phone = _phone(user, primary.identity, pol)
        usable = (
            factors.available(user, phone, pol.factors, allowed_regions=pol.allowed_regions)
            if user
            else ()
        )
        decided = flow.after_enrolment(user, usable, pol, attrs)
        if decided is not None:
            return decided
        assert user is not None  # noqa: S101 (after_enrolment returns a decision for None)
        try:
            if await self._phones.locked(user.username):
                return Reject(RejectReason.LOCKED_OUT)
            if pol.mode is Mode.APPEND:
                logs.note(factor=Factor.TOTP.value)
                return await self._check_appended(user, code, pol, attrs)
            if pol.mode is Mode.APPROVE:
                return await self._approve(user, phone, usable, pol, progress)
            return await self._challenge(user, phone, usable, pol, attrs)
        except (StoreUnavailable, TimeoutError):
            return policy.on_backend_failure(
                RejectReason.STORE_UNAVAILABLE, pol, primary_verified=True, attributes=attrs
            )
        except DeliveryFailed:
            return policy.on_backend_failure(
                RejectReason.DELIVERY_UNAVAILABLE, pol, primary_verified=True, attributes=attrs
            )

    async def _challenge(
        self,
        user: User,
        phone: str | None,
        usable: tuple[Factor, ...],
        pol: ClientPolicy,
        attrs: tuple[Attribute, ...],
    ) -> Outcome:
        """Challenge mode: ask for the first usable factor (sending its code if it has one)."""
        prompt_factors = tuple(f for f in usable if f is not Factor.APPROVE)
        if not prompt_factors:
            return Reject(RejectReason.NOT_ENROLLED)
        first = prompt_factors[0]
        logs.note(factor=first.value)
        state = self._new_state()
        code_hash = ""
        if first in (Factor.SMS, Factor.VOICE):
            assert phone is not None  # noqa: S101 (phone factors are usable only with a phone)
            sent = await self._phones.send_code(
                first,
                username=user.username,
                phone=phone,
                policy=pol,
                state=state,
                language=user.language,
            )
            if isinstance(sent, Reject):
                return sent
            code_hash = sent
        issue = flow.issue_challenge(
            user,
            pol,
            attrs,
            now=self._clock.now(),
            state=state,
            factor=first,
            code_hash=code_hash,
            phone=phone or "",
            options=prompt_factors,
        )
        await self._put(issue)
        return issue.reply

    async def _approve(
        self,
        user: User,
        phone: str | None,
        usable: tuple[Factor, ...],
        pol: ClientPolicy,
        progress: _Progress,
    ) -> Outcome:
        """Approve mode: call the user and answer with their keypress, within the window."""
        if Factor.APPROVE not in usable or phone is None:
            return Reject(RejectReason.NOT_ENROLLED)
        budget = progress.ends - asyncio.get_running_loop().time() - _APPROVE_MARGIN
        outcome = await self._phones.approve(
            username=user.username,
            phone=phone,
            policy=pol,
            attributes=progress.attributes,
            budget=budget,
            language=user.language,
        )
        if isinstance(outcome, Accept):
            await self._phones.clear_failures(user.username)
        return outcome

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
        if record.phone:
            logs.note(phone_tail=logs.phone_tail(record.phone))
        try:
            user = await self._find_user(attempt.username)
        except (EnrolmentUnavailable, TimeoutError):
            return Reject(RejectReason.ENROLMENT_UNAVAILABLE)
        if user is None or user.disabled:
            await self._call(self._store.take_challenge(key), store_timeout, "store")
            return Reject(RejectReason.USER_DISABLED if user else RejectReason.UNKNOWN_USER)

        answer = (attempt.password or b"").decode("utf-8", errors="replace").strip()
        choice = factors.parse_choice(answer)
        if choice is not None and choice in record.options and choice is not record.factor:
            try:
                return await self._switch(user, choice, state, key, pol, record)
            except DeliveryFailed:
                return Reject(RejectReason.DELIVERY_UNAVAILABLE)

        if factors.sent_code_matches(self._phones.code_key, state, record.code_hash, answer):
            return await self._right_code(user, key)
        reason = RejectReason.BAD_CODE
        match = otp.check_totp(
            user.tokens,
            answer,
            now=self._clock.now(),
            lookback_steps=pol.lookback_steps,
            lookforward_steps=pol.lookforward_steps,
        )
        if match is not None:
            if await self._mark_used(match, pol):
                return await self._right_code(user, key)
            reason = RejectReason.CODE_REPLAYED
        if await self._phones.count_failure(user.username):
            await self._call(self._store.take_challenge(key), store_timeout, "store")
            return Reject(RejectReason.LOCKED_OUT)
        attempts = await self._call(self._store.add_attempt(key), store_timeout, "store")
        outcome = flow.after_wrong_code(
            attempts, pol, state=state, digits=flow.code_digits(user), reason=reason
        )
        if isinstance(outcome, Reject) and attempts is not None:
            await self._call(self._store.take_challenge(key), store_timeout, "store")
        return outcome

    async def _right_code(self, user: User, key: str) -> Outcome:
        """Consume the challenge (exactly once, any node) and forget earlier wrong codes."""
        taken = await self._call(self._store.take_challenge(key), self._timeouts.store, "store")
        outcome = flow.after_right_code(taken)
        if isinstance(outcome, Accept):
            await self._phones.clear_failures(user.username)
        return outcome

    async def _switch(
        self,
        user: User,
        choice: Factor,
        state: bytes,
        key: str,
        pol: ClientPolicy,
        record: PendingChallenge,
    ) -> Outcome:
        """The user asked for another factor at the prompt: send its code, once per challenge."""
        logs.note(factor=choice.value)
        first_time = await self._call(
            self._store.mark_once(f"sent:{key}:{choice.value}", pol.challenge_ttl),
            self._timeouts.store,
            "store",
        )
        if first_time:
            sent = await self._phones.send_code(
                choice,
                username=user.username,
                phone=record.phone,
                policy=pol,
                state=state,
                language=user.language,
            )
            if isinstance(sent, Reject):
                return sent
            record = replace(record, factor=choice, code_hash=sent)
            remaining = max(record.expires - self._clock.now(), 1.0)
            await self._call(
                self._store.put_challenge(key, record, remaining), self._timeouts.store, "store"
            )
        else:
            record = replace(record, factor=choice)
        return ChallengeReply(state=state, prompt=flow.prompt_for(record, pol, user))

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
        return await self._deadlines.run(awaitable, deadline, backend)


_APPROVE_MARGIN = 0.3
"""Seconds kept back from the window when waiting for a keypress, to send the answer."""


def _phone(user: User | None, identity: Identity | None, pol: ClientPolicy) -> str | None:
    """The user's number in E.164 form when a phone factor is allowed, else None."""
    if not any(f in pol.factors for f in (Factor.SMS, Factor.VOICE, Factor.APPROVE)):
        return None
    raw = factors.phone_of(user, identity)
    return factors.normalise_phone(raw, default_region=pol.default_region) if raw else None


def _answer_budget(response_window: float) -> float:
    """Time the decision may take: the NAS's window less a margin to encode and send."""
    return max(response_window * 0.9, response_window - 0.5)
