"""The challenge state table: what each step of a login leads to.

A login is at most two Access-Requests (RFC 2865 §4.4)::

    round one (no State)                               round two (State)
    ---------------------------------------------     -----------------------------------------
    no / empty password           -> Reject            State unknown or expired -> Reject
    primary rejects               -> Reject            other user or client     -> Reject
    outside require_groups        -> Reject            code right, first use    -> Accept (+attrs)
    exempt user or group          -> Accept
    mode none                     -> Accept
    not enrolled                  -> Reject | Accept   code right, replayed     -> wrong code
    disabled                      -> Reject            wrong code, attempts left -> Challenge
    mode append: code right       -> Accept            wrong code, last attempt -> Reject
    mode append: code wrong       -> Reject
    mode challenge                -> Challenge (+record stored under a fresh State)
    upstream challenges           -> Challenge relayed (upstream answer -> round one again)

The functions below are those rows. They take the time and the fresh State as arguments and
return values; the service performs the store and database calls between them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mfa_radius.core import prompts
from mfa_radius.core.factors import menu_suffix
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    Attribute,
    ChallengeReply,
    Factor,
    Mode,
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
from mfa_radius.core.policy import ClientPolicy

STATE_BYTES = 16
"""Length of a fresh State: 128 random bits, never guessable (RFC 2865 §5.24 leaves it to us)."""


@dataclass(frozen=True, slots=True)
class IssueChallenge:
    """Store ``record`` under ``key`` for ``ttl`` seconds, then send ``reply``.

    Attributes:
        key: the store key derived from the State (the raw State is never a key).
        record: the pending challenge.
        ttl: seconds until it expires.
        reply: the Access-Challenge to send once the record is stored.
    """

    key: str
    record: PendingChallenge
    ttl: float
    reply: ChallengeReply


def challenge_key(state: bytes) -> str:
    """Derive the store key of a State: SHA-256 hex, so the State itself is stored nowhere."""
    return hashlib.sha256(state).hexdigest()


def state_id(state: bytes) -> str:
    """The log name of a State: the first 8 hex digits of its SHA-256 (never the raw value)."""
    return challenge_key(state)[:8]


def code_digits(user: User) -> int:
    """The code length to announce in the prompt: that of the user's first token (6 if none)."""
    return user.tokens[0].digits if user.tokens else 6


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


def issue_challenge(
    user: User,
    policy: ClientPolicy,
    attributes: tuple[Attribute, ...],
    *,
    now: float,
    state: bytes,
    factor: Factor = Factor.TOTP,
    code_hash: str = "",
    phone: str = "",
    options: tuple[Factor, ...] = (),
) -> IssueChallenge:
    """Round one, challenge mode: build the pending record and the Access-Challenge.

    Args:
        user: the enrolled user.
        policy: the client's settings.
        attributes: reply attributes to return on the final Accept.
        now: current time, epoch seconds.
        state: a fresh random State of :data:`STATE_BYTES` bytes.
        factor: the factor asked for.
        code_hash: for a sent code, its keyed hash (``factors.code_hash``).
        phone: the E.164 number a code went to (or may go to after a switch).
        options: the factors the user may switch to.

    Returns:
        What to store and what to send.

    Raises:
        ValueError: when ``state`` is shorter than 16 bytes (a programming error).
    """
    if len(state) < STATE_BYTES:
        raise ValueError("State must carry at least 128 random bits")
    record = PendingChallenge(
        username=user.username,
        client=policy.name,
        factor=factor,
        created=now,
        expires=now + policy.challenge_ttl,
        reply_attributes=attributes,
        code_hash=code_hash,
        phone=phone,
        options=options,
    )
    return IssueChallenge(
        key=challenge_key(state),
        record=record,
        ttl=policy.challenge_ttl,
        reply=ChallengeReply(state=state, prompt=prompt_for(record, policy, user)),
    )


def prompt_for(record: PendingChallenge, policy: ClientPolicy, user: User | None) -> str:
    """The prompt for the factor a record asks for, with the menu of the others."""
    suffix = menu_suffix(record.options, record.factor) if policy.show_menu else ""
    if record.factor is Factor.SMS:
        template, digits = policy.sms_prompt, policy.code_length
    elif record.factor is Factor.VOICE:
        template, digits = policy.voice_prompt, policy.code_length
    else:
        template, digits = policy.prompt, code_digits(user) if user else 6
    return prompts.render(template, digits=digits, phone=mask_number(record.phone), suffix=suffix)


def mask_number(e164: str) -> str:
    """A number as shown in a prompt: only the last two digits."""
    return "*" * max(len(e164) - 3, 0) + e164[-2:] if e164 else ""


def relay_upstream(
    primary: PrimaryChallenge,
    policy: ClientPolicy,
    *,
    username: str,
    now: float,
    state: bytes,
) -> IssueChallenge:
    """Relay the upstream server's own Access-Challenge under a State of ours.

    The NAS sees our State; the record maps it to the upstream's, which goes back upstream
    with the user's answer. The upstream's State never reaches the NAS, so it cannot be
    replayed against the upstream around us.

    Args:
        primary: the upstream's challenge.
        policy: the client's settings.
        username: the normalised user.
        now: current time, epoch seconds.
        state: a fresh random State of :data:`STATE_BYTES` bytes.

    Returns:
        What to store and what to send.

    Raises:
        ValueError: when ``state`` is shorter than 16 bytes.
    """
    if len(state) < STATE_BYTES:
        raise ValueError("State must carry at least 128 random bits")
    record = PendingChallenge(
        username=username,
        client=policy.name,
        factor=Factor.UPSTREAM,
        created=now,
        expires=now + policy.challenge_ttl,
        upstream_state=primary.state,
    )
    prompt = prompts.fit_octets(primary.prompt).decode("utf-8")
    return IssueChallenge(
        key=challenge_key(state),
        record=record,
        ttl=policy.challenge_ttl,
        reply=ChallengeReply(state=state, prompt=prompt),
    )


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
