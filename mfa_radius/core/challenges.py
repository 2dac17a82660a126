"""Challenge records: the key a State is stored under, and what a new challenge holds.

RFC 2865 §5.24 leaves the State's content to the server: ours is 128 random bits, and the
store key is its SHA-256, so the State itself is stored nowhere and a copy of the store cannot
answer a challenge. The prompt is rendered here because a re-challenge on any node must
produce the same text from the same record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mfa_radius.core import prompts
from mfa_radius.core.menu import menu_suffix
from mfa_radius.core.model import (
    Attribute,
    ChallengeReply,
    Factor,
    PendingChallenge,
    User,
)
from mfa_radius.core.phones import mask_number
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
