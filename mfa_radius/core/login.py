"""The login engine: one Access-Request from arrival to decision, without I/O.

A login is at most two Access-Requests (RFC 2865 §4.4), plus the upstream's own rounds::

    round one (no State)                               round two (State)
    ---------------------------------------------     -----------------------------------------
    no / empty password           -> Reject            State unknown or expired -> Reject
    primary rejects               -> Reject            other user or client     -> Reject
    primary down                  -> Reject            user gone or disabled    -> Reject (taken)
    outside require_groups        -> Reject            menu choice              -> Challenge (sent)
    exempt user or group          -> Accept            code right, first use    -> Accept (+attrs)
    mode none                     -> Accept            code right, replayed     -> wrong code
    disabled                      -> Reject            wrong code, locked now   -> Reject (taken)
    not enrolled                  -> Reject | Accept   wrong code, attempts left -> Challenge
    locked out                    -> Reject            wrong code, last attempt -> Reject (taken)
    mode append: code right       -> Accept            relayed upstream answer  -> round one again
    mode append: code wrong       -> Reject
    mode approve: key 1           -> Accept            a backend fails          -> Reject
    mode challenge                -> Challenge (+record stored under a fresh State)
    upstream challenges           -> Challenge relayed
    a backend fails               -> fail mode
    the store is full             -> Reject            the store is full        -> Reject

A full store (``Failed.full``) is not an outage: logins that know one password can fill it,
so it never reaches the fail mode (``safe`` would accept them without a second factor). It is
rejected with ``store_full`` in both rounds and in every mode, with a ``store_full`` notice.

:class:`Login` runs those rows for one request. It is a state machine driven from outside
(h11 style): ``start()`` returns the first effect to perform (``core.effects``) or the
:class:`Decision`; ``send(result)`` hands it the effect's result and returns the next one.
Time, the policy and fresh random values come in as arguments; nothing here awaits, reads a
clock, draws randomness or logs. The runner (``engine.py``) performs the effects through the
ports; the tests drive it with scripted results.

Each row is a pure function below (``after_primary`` ...); ``Login`` sequences them, asking
the factor plug-ins (``core.factors``) to start and check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mfa_radius.core import limits, prompts
from mfa_radius.core.audit import Audit, Notes, phone_tail
from mfa_radius.core.challenges import (
    challenge_key,
    code_digits,
    issue_challenge,
    prompt_for,
)
from mfa_radius.core.effects import (
    AddAttempt,
    Backend,
    BackendFailure,
    CheckPassword,
    Effect,
    Failed,
    FindUser,
    GetChallenge,
    MarkOnce,
    PutChallenge,
    Steps,
    TakeChallenge,
    ask,
)
from mfa_radius.core.factors import REGISTRY, available, parse_choice
from mfa_radius.core.factors.base import Context, Fresh, Settings, Verdict
from mfa_radius.core.factors.totp import verify as verify_totp
from mfa_radius.core.factors.upstream import relay
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
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
    PrimaryReject,
    PrimaryResult,
    Reject,
    RejectReason,
    Unenrolled,
    User,
)
from mfa_radius.core.otp import split_appended
from mfa_radius.core.phones import normalise_phone, phone_of
from mfa_radius.core.policy import ClientPolicy, on_backend_failure

__all__ = ["Decision", "Fresh", "Login", "Settings", "Step"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a request comes to, with what was learnt on the way.

    Attributes:
        outcome: Accept, Reject or ChallengeReply.
        audit: the request's audit fields (the ``request_finished`` line's).
    """

    outcome: Outcome
    audit: Audit


Step = Effect[Any] | Decision
"""What the engine returns: the next effect to perform, or the decision."""


class Login:
    """The engine for one Access-Request.

    Args:
        attempt: the request as the MFA logic sees it.
        policy: the client's settings.
        settings: the cluster's settings.
        now: the request's time, epoch seconds.
        deadline: epoch seconds by which the request must be decided.
        fresh: random values the request may need.
    """

    __slots__ = (
        "_attempt",
        "_deadline",
        "_fresh",
        "_gen",
        "_notes",
        "_now",
        "_policy",
        "_settings",
        "attributes",
        "primary_verified",
    )

    def __init__(
        self,
        attempt: AuthAttempt,
        policy: ClientPolicy,
        settings: Settings,
        *,
        now: float,
        deadline: float,
        fresh: Fresh,
    ) -> None:
        self._attempt = attempt
        self._policy = policy
        self._settings = settings
        self._now = now
        self._deadline = deadline
        self._fresh = fresh
        self._notes = Notes(mode=policy.mode.value)
        self._gen = self._run()
        self.primary_verified = False
        """Whether the password was checked in this request (for the fail mode)."""
        self.attributes: tuple[Attribute, ...] = ()
        """Reply attributes the primary granted in this request."""

    def start(self) -> Step:
        """Begin: the first effect to perform, or the decision."""
        return self._advance(None)

    def send(self, result: object) -> Step:
        """Hand over the result of the last effect (or ``effects.Failed``); get the next step."""
        return self._advance(result)

    def expire(self) -> Decision:
        """The response window ran out while an effect was pending: decide by fail mode."""
        self._gen.close()
        outcome = on_backend_failure(
            RejectReason.TIMEOUT,
            self._policy,
            primary_verified=self.primary_verified,
            attributes=self.attributes,
        )
        return Decision(outcome, self._notes.freeze())

    def _advance(self, result: object) -> Step:
        try:
            return self._gen.send(result)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return Decision(outcome, self._notes.freeze())

    # the rounds -----------------------------------------------------------------------------

    def _run(self) -> Steps[Outcome]:
        state = self._attempt.state
        if state is None:
            return (yield from self._first_round())
        return (yield from self._second_round(state))

    def _first_round(self) -> Steps[Outcome]:
        password = self._attempt.password
        if not password:
            return Reject(RejectReason.MISSING_PASSWORD)
        code = None
        if self._policy.mode is Mode.APPEND:
            split = split_appended(password, self._policy.append_delimiter, digits=6)
            if split is not None:
                password, code = split
        return (yield from self._primary_step(password, code, None))

    def _primary_step(
        self, password: bytes, code: str | None, upstream_state: bytes | None
    ) -> Steps[Outcome]:
        """Check the password (or the answer to an upstream challenge), then go on."""
        pol = self._policy
        try:
            primary = yield from ask(CheckPassword(password, upstream_state))
        except BackendFailure:
            return Reject(RejectReason.PRIMARY_UNAVAILABLE)
        if primary.upstream:
            self._notes.note(upstream=primary.upstream)
        rejected = after_primary(primary, pol)
        if rejected is not None:
            return rejected
        if isinstance(primary, PrimaryChallenge):
            return (yield from self._relay(primary))
        assert isinstance(primary, PrimaryAccept)  # noqa: S101 (after_primary ruled out Reject)
        self.primary_verified = True
        self.attributes = attrs = primary.attributes
        if primary.identity is not None:
            self._notes.note(
                display_name=primary.identity.display_name, email=primary.identity.email
            )
        decided = after_password(primary, pol, username=self._attempt.username)
        if decided is not None:
            return decided
        try:
            user = yield from self._find_user()
        except BackendFailure:
            return self._fail(RejectReason.ENROLMENT_UNAVAILABLE)
        phone = _phone(user, primary.identity, pol)
        usable = (
            available(user, phone, pol.factors, allowed_regions=pol.allowed_regions) if user else ()
        )
        decided = after_enrolment(user, usable, pol, attrs)
        if decided is not None:
            return decided
        assert user is not None  # noqa: S101 (after_enrolment returns a decision for None)
        try:
            if (yield from limits.locked(user.username)):
                return Reject(RejectReason.LOCKED_OUT)
            if pol.mode is Mode.APPEND:
                self._notes.note(factor=Factor.TOTP.value)
                return (yield from self._check_appended(user, code))
            if pol.mode is Mode.APPROVE:
                return (yield from self._approve(user, phone, usable))
            return (yield from self._challenge(user, phone, usable))
        except BackendFailure as exc:
            if exc.failed.full:
                return self._store_full(exc.failed)
            if exc.failed.backend is Backend.DELIVERY:
                return self._fail(RejectReason.DELIVERY_UNAVAILABLE)
            return self._fail(RejectReason.STORE_UNAVAILABLE)

    def _challenge(
        self, user: User, phone: str | None, usable: tuple[Factor, ...]
    ) -> Steps[Outcome]:
        """Challenge mode: ask for the first usable factor (sending its code if it has one)."""
        prompt_factors = tuple(f for f in usable if REGISTRY[f].at_prompt)
        if not prompt_factors:
            return Reject(RejectReason.NOT_ENROLLED)
        first = prompt_factors[0]
        self._notes.note(factor=first.value)
        state = self._fresh.state
        started = yield from REGISTRY[first].start(self._context(user, phone or "", state))
        if not isinstance(started, str):
            return started
        issue = issue_challenge(
            user,
            self._policy,
            self.attributes,
            now=self._now,
            state=state,
            factor=first,
            code_hash=started,
            phone=phone or "",
            options=prompt_factors,
        )
        yield from ask(PutChallenge(issue.key, issue.record, issue.ttl))
        self._notes.note(state_id=issue.key[:8])
        return issue.reply

    def _approve(self, user: User, phone: str | None, usable: tuple[Factor, ...]) -> Steps[Outcome]:
        """Approve mode: call the user and answer with their keypress, within the window."""
        if Factor.APPROVE not in usable or phone is None:
            return Reject(RejectReason.NOT_ENROLLED)
        ctx = self._context(user, phone, self._fresh.state)
        outcome = yield from REGISTRY[Factor.APPROVE].start(ctx)
        assert not isinstance(outcome, str)  # noqa: S101 (approve always decides)
        if isinstance(outcome, Accept):
            yield from limits.clear_failures(user.username)
        return outcome

    def _relay(self, primary: PrimaryChallenge) -> Steps[Outcome]:
        """Pass the upstream's own challenge to the NAS under a State of ours."""
        self._notes.note(factor=Factor.UPSTREAM.value)
        issue = relay(
            primary,
            self._policy,
            username=self._attempt.username,
            now=self._now,
            state=self._fresh.state,
        )
        try:
            yield from ask(PutChallenge(issue.key, issue.record, issue.ttl))
        except BackendFailure as exc:
            if exc.failed.full:
                return self._store_full(exc.failed)
            return Reject(RejectReason.STORE_UNAVAILABLE)
        self._notes.note(state_id=issue.key[:8])
        return issue.reply

    def _check_appended(self, user: User, code: str | None) -> Steps[Outcome]:
        if code is None:
            return Reject(RejectReason.BAD_CODE_FORMAT)
        verdict = yield from verify_totp(user, code, self._policy, now=self._now)
        return after_appended_code(
            verdict is not Verdict.NO_MATCH, verdict is Verdict.MATCH, self.attributes
        )

    def _second_round(self, state: bytes) -> Steps[Outcome]:
        key = challenge_key(state)
        self._notes.note(state_id=key[:8])
        try:
            record = yield from ask(GetChallenge(key))
            rejected = check_pending(
                record,
                username=self._attempt.username,
                client=self._attempt.client,
                now=self._now,
            )
            if rejected is not None:
                return rejected
            assert record is not None  # noqa: S101 (check_pending rejects None)
            if not record.upstream_state:
                return (yield from self._check_code(state, key, record))
            taken = yield from ask(TakeChallenge(key))
            if taken is None:
                return Reject(RejectReason.UNKNOWN_STATE)
        except BackendFailure as exc:
            if exc.failed.full:
                return self._store_full(exc.failed)
            # The password was checked in round one, not in this request: never fail open.
            return Reject(RejectReason.STORE_UNAVAILABLE)
        # The user answered the upstream's own challenge: it goes back upstream, and what the
        # upstream says next is handled like a first answer.
        answer = self._attempt.password or b""
        return (yield from self._primary_step(answer, None, taken.upstream_state))

    def _check_code(self, state: bytes, key: str, record: PendingChallenge) -> Steps[Outcome]:
        self._notes.note(factor=record.factor.value, attempt=record.attempts + 1)
        if record.phone:
            self._notes.note(phone_tail=phone_tail(record.phone))
        try:
            user = yield from self._find_user()
        except BackendFailure:
            return Reject(RejectReason.ENROLMENT_UNAVAILABLE)
        if user is None or user.disabled:
            yield from ask(TakeChallenge(key))
            return Reject(RejectReason.USER_DISABLED if user else RejectReason.UNKNOWN_USER)

        answer = (self._attempt.password or b"").decode("utf-8", errors="replace").strip()
        choice = parse_choice(answer)
        if choice is not None and choice in record.options and choice is not record.factor:
            try:
                return (yield from self._switch(user, choice, state, key, record))
            except BackendFailure as exc:
                if exc.failed.backend is Backend.DELIVERY:
                    return Reject(RejectReason.DELIVERY_UNAVAILABLE)
                raise

        ctx = self._context(user, record.phone, state)
        reason = RejectReason.BAD_CODE
        for plugin in REGISTRY.values():
            verdict = yield from plugin.check(ctx, record, answer)
            if verdict is Verdict.MATCH:
                return (yield from self._right_code(user, key))
            if verdict is Verdict.REPLAYED:
                reason = RejectReason.CODE_REPLAYED
                break
        if (yield from limits.count_failure(user.username, self._settings.lockout, self._notes)):
            yield from ask(TakeChallenge(key))
            return Reject(RejectReason.LOCKED_OUT)
        attempts = yield from ask(AddAttempt(key))
        outcome = after_wrong_code(
            attempts, self._policy, state=state, digits=code_digits(user), reason=reason
        )
        if isinstance(outcome, Reject) and attempts is not None:
            yield from ask(TakeChallenge(key))
        return outcome

    def _right_code(self, user: User, key: str) -> Steps[Outcome]:
        """Consume the challenge (exactly once, any node) and forget earlier wrong codes."""
        taken = yield from ask(TakeChallenge(key))
        outcome = after_right_code(taken)
        if isinstance(outcome, Accept):
            yield from limits.clear_failures(user.username)
        return outcome

    def _switch(
        self, user: User, choice: Factor, state: bytes, key: str, record: PendingChallenge
    ) -> Steps[Outcome]:
        """The user asked for another factor at the prompt: send its code, once per challenge."""
        self._notes.note(factor=choice.value)
        first_time = yield from ask(
            MarkOnce(f"sent:{key}:{choice.value}", self._policy.challenge_ttl)
        )
        if first_time:
            started = yield from REGISTRY[choice].start(self._context(user, record.phone, state))
            if not isinstance(started, str):
                return started
            record = replace(record, factor=choice, code_hash=started)
            remaining = max(record.expires - self._now, 1.0)
            yield from ask(PutChallenge(key, record, remaining))
        else:
            record = replace(record, factor=choice)
        return ChallengeReply(state=state, prompt=prompt_for(record, self._policy, user))

    # helpers ----------------------------------------------------------------------------------

    def _find_user(self) -> Steps[User | None]:
        user = yield from ask(FindUser(self._attempt.username))
        if user is not None:
            self._notes.note(user_id=user.user_id)
            self._notes.note_unless_known(display_name=user.display_name, email=user.email)
        return user

    def _store_full(self, failed: Failed) -> Reject:
        """The store refused a new entry: reject in every fail mode, and ask for a warning."""
        self._notes.notice("store_full", backend=failed.backend.value, error=failed.detail)
        return Reject(RejectReason.STORE_FULL)

    def _fail(self, reason: RejectReason) -> Accept | Reject:
        """A backend failed after the password was checked: the client's fail mode decides."""
        return on_backend_failure(
            reason, self._policy, primary_verified=True, attributes=self.attributes
        )

    def _context(self, user: User, phone: str, state: bytes) -> Context:
        return Context(
            user=user,
            phone=phone,
            policy=self._policy,
            settings=self._settings,
            now=self._now,
            deadline=self._deadline,
            state=state,
            fresh=self._fresh,
            notes=self._notes,
            attributes=self.attributes,
        )


def _phone(user: User | None, identity: Identity | None, pol: ClientPolicy) -> str | None:
    """The user's number in E.164 form when a phone factor is allowed, else None."""
    if not any(f in pol.factors for f in (Factor.SMS, Factor.VOICE, Factor.APPROVE)):
        return None
    raw = phone_of(user, identity)
    return normalise_phone(raw, default_region=pol.default_region) if raw else None


# the rows -------------------------------------------------------------------------------------


def after_primary(primary: PrimaryResult, policy: ClientPolicy) -> Reject | None:
    """Primary result: a rejection ends the login; None means go on (accept or relay).

    The Reject keeps the backend's reason for the audit line; the NAS only ever sees
    Access-Reject, so it cannot tell an unknown user from a wrong password (RFC 2865 §4.3).
    The backend's Reply-Message is passed on only when the profile allows it.
    """
    if isinstance(primary, PrimaryReject):
        return Reject(primary.reason, primary.message if policy.pass_reply_message else None)
    return None


def after_password(
    primary: PrimaryAccept, policy: ClientPolicy, *, username: str
) -> Accept | Reject | None:
    """Round one, password accepted: apply the profile's group and exemption rules.

    Order matters: ``require_groups`` is checked first, so an exempt user outside the
    allowed groups is still refused; then exemptions; then mode ``none``.

    Args:
        primary: the backend's acceptance, with the user's directory identity if any.
        policy: the client's settings.
        username: the normalised user.

    Returns:
        A decision, or None when the second factor must follow.
    """
    groups = primary.identity.groups if primary.identity is not None else frozenset()
    if policy.require_groups and not policy.require_groups & groups:
        return Reject(RejectReason.GROUP_NOT_ALLOWED)
    if username in policy.exempt_users or policy.exempt_groups & groups:
        return Accept(AcceptReason.EXEMPT, primary.attributes)
    if policy.mode is Mode.NONE:
        return Accept(AcceptReason.PRIMARY_ONLY, primary.attributes)
    return None


def after_enrolment(
    user: User | None,
    usable: tuple[Factor, ...],
    policy: ClientPolicy,
    attributes: tuple[Attribute, ...],
) -> Accept | Reject | None:
    """Round one, enrolment looked up: decide users who cannot be asked for a code.

    Args:
        user: the enrolment record, or None when the user is not in the database.
        usable: the factors this user can use at this client (see ``factors.available``).
        policy: the client's settings.
        attributes: reply attributes from the primary backend.

    Returns:
        Reject for a disabled user; the client's ``unenrolled`` decision for a user without a
        usable factor; None when the user must now give a second factor.
    """
    if user is not None and user.disabled:
        return Reject(RejectReason.USER_DISABLED)
    if user is None or not usable:
        if policy.unenrolled is Unenrolled.ACCEPT:
            return Accept(AcceptReason.UNENROLLED_ALLOWED, attributes)
        return Reject(RejectReason.NOT_ENROLLED)
    return None


def check_pending(
    record: PendingChallenge | None, *, username: str, client: str, now: float
) -> Reject | None:
    """Round two: is the State's record usable by this request?

    Args:
        record: what the store holds for the State, or None.
        username: the normalised User-Name of this request.
        client: the configured name of the NAS that sent it.
        now: current time, epoch seconds.

    Returns:
        Reject when the record is missing, expired, or belongs to another user or NAS (RFC
        2865 §5.24: State is only meaningful to the server that issued it for that session);
        None when the code may be checked.
    """
    if record is None or record.expires <= now:
        return Reject(RejectReason.UNKNOWN_STATE)
    if record.username != username or record.client != client:
        return Reject(RejectReason.STATE_MISMATCH)
    return None


def after_right_code(record: PendingChallenge | None) -> Accept | Reject:
    """Round two, the code was right and first used: the record must now be consumed.

    Args:
        record: what the one-shot take returned; None means another request (on any node)
            consumed the State first, so this one must not also succeed.

    Returns:
        Accept with the attributes kept from round one, or Reject.
    """
    if record is None:
        return Reject(RejectReason.UNKNOWN_STATE)
    return Accept(AcceptReason.MFA_OK, record.reply_attributes)


def after_wrong_code(
    attempts: int | None,
    policy: ClientPolicy,
    *,
    state: bytes,
    digits: int,
    reason: RejectReason = RejectReason.BAD_CODE,
) -> ChallengeReply | Reject:
    """Round two, the code was wrong (or replayed): challenge again or give up.

    Args:
        attempts: the wrong-code count after this one, or None when the record vanished.
        policy: the client's settings.
        state: the State to challenge with again (the same one: the record keeps its TTL).
        digits: the code length for the prompt.
        reason: the reason to log when this was the last attempt.

    Returns:
        A new Access-Challenge while attempts remain; Reject after ``max_attempts``.
    """
    if attempts is None:
        return Reject(RejectReason.UNKNOWN_STATE)
    if attempts >= policy.max_attempts:
        return Reject(RejectReason.TOO_MANY_ATTEMPTS if reason is RejectReason.BAD_CODE else reason)
    prompt = prompts.render(
        policy.retry_prompt, digits=digits, attempts_left=policy.max_attempts - attempts
    )
    return ChallengeReply(state=state, prompt=prompt, retry_reason=reason)


def after_appended_code(
    matched: bool, replay_fresh: bool, attributes: tuple[Attribute, ...]
) -> Accept | Reject:
    """Append mode: one request carried both password and code.

    Args:
        matched: the code matched a token within the window.
        replay_fresh: the code's replay mark was set by this request (first use).
        attributes: reply attributes from the primary backend.

    Returns:
        Accept, or Reject with ``bad_code`` / ``code_replayed``.
    """
    if not matched:
        return Reject(RejectReason.BAD_CODE)
    if not replay_fresh:
        return Reject(RejectReason.CODE_REPLAYED)
    return Accept(AcceptReason.MFA_OK, attributes)
