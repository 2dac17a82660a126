"""A one-time code sent by text message or read out by a phone call.

Sent only after a correct password and within the send limits (``core.limits``). The code is
never stored: the challenge record keeps an HMAC of it, keyed with a secret every node shares
and bound to the challenge's State, so neither a copy of the store nor a record moved to
another challenge reveals or reuses it. A provider that refuses the number rejects the login
(``delivery_rejected``); an outage is left to the profile's fail mode. Either way the send
was not made, so its counts go back to the send limits (``limits.give_back``); the cool-down
stays.
"""

from __future__ import annotations

import hashlib
import hmac

from mfa_radius.core import audit
from mfa_radius.core.effects import Backend, BackendFailure, Failed, Send, Steps
from mfa_radius.core.factors.base import Context, Started, Verdict
from mfa_radius.core.limits import give_back, within_limits
from mfa_radius.core.messages import CodeCall, CodeText, Message
from mfa_radius.core.model import Factor, PendingChallenge, Reject, RejectReason, User


class SentCode:
    """The text-message (``sms``) or voice-call (``voice``) code plug-in.

    Args:
        factor: ``Factor.SMS`` or ``Factor.VOICE``.
    """

    at_prompt = True

    def __init__(self, factor: Factor) -> None:
        if factor not in (Factor.SMS, Factor.VOICE):
            raise ValueError("a sent code goes by text or by call")
        self._factor = factor

    @property
    def factor(self) -> Factor:
        """SMS or VOICE."""
        return self._factor

    def usable(self, user: User, phone_ok: bool) -> bool:
        """Usable with a valid number in an allowed region."""
        return phone_ok

    def start(self, ctx: Context) -> Steps[Started]:
        """Send a fresh code within the limits; return its keyed hash for the record.

        Raises:
            BackendFailure: no provider is configured, the provider is down, or the limits
                could not be counted (the fail mode decides).
        """
        refused = yield from admit(
            ctx,
            self._factor,
            configured=ctx.settings.can_send,
            missing="no SMS/voice provider is configured",
        )
        if refused is not None:
            return refused
        pol = ctx.policy
        code = ctx.fresh.digits[: pol.code_length]
        message: Message
        if self._factor is Factor.SMS:
            minutes = max(int(pol.challenge_ttl // 60), 1)
            body = sms_text(pol.sms_text, code=code, minutes=minutes, organisation=pol.organisation)
            message = CodeText(to=ctx.phone, body=body, sender=pol.sms_sender)
        else:
            message = CodeCall(
                to=ctx.phone,
                code=code,
                organisation=pol.organisation,
                language=ctx.user.language or pol.language,
                caller_id=pol.voice_caller_id,
            )
        refused = yield from deliver(message, ctx)
        return refused or code_hash(ctx.settings.code_key, ctx.state, code)

    def check(self, ctx: Context, record: PendingChallenge, answer: str) -> Steps[Verdict]:
        """Compare the answer with the hash of the code this record's factor sent."""
        if record.factor is not self._factor:
            return Verdict.NO_MATCH
        matched = sent_code_matches(ctx.settings.code_key, ctx.state, record.code_hash, answer)
        yield from ()  # a generator with no effects
        return Verdict.MATCH if matched else Verdict.NO_MATCH


def admit(ctx: Context, factor: Factor, *, configured: bool, missing: str) -> Steps[Reject | None]:
    """Before a text or call: note it, check a provider exists, count it against the limits.

    Args:
        ctx: the factor's context (user, number, settings, audit notes).
        factor: what is about to be sent (audit ``factor``).
        configured: whether what it needs is configured.
        missing: the failure detail when it is not.

    Returns:
        Reject(send_limited) when a limit says no; None when the send may go ahead.

    Raises:
        BackendFailure: not configured, or the limits could not be counted.
    """
    ctx.notes.note(factor=factor.value, phone_tail=audit.phone_tail(ctx.phone))
    if not configured:
        raise BackendFailure(Failed(Backend.DELIVERY, missing))
    allowed = yield from within_limits(
        ctx.settings.send_limits,
        username=ctx.user.username,
        phone=ctx.phone,
        now=ctx.now,
        notes=ctx.notes,
    )
    return None if allowed else Reject(RejectReason.SEND_LIMITED)


def deliver(message: Message, ctx: Context) -> Steps[Reject | None]:
    """Hand one message or call to the provider, once; give its counts back when it fails.

    Called after :func:`admit` counted the send. A send the provider did not accept (down,
    the number refused) is taken back from the send limits, so that an outage does not use
    up the user's quota. A send whose fate is unknown (no answer in time: it may have gone
    out) keeps counting, so a slow provider cannot be used to send past the limits.

    Returns:
        Reject(delivery_rejected) when the provider refused the number; None when sent.

    Raises:
        BackendFailure: the provider is down or did not answer in time.
    """
    result = yield Send(message)
    if isinstance(result, Failed):
        if not result.maybe_sent:
            yield from give_back(
                ctx.settings.send_limits, username=ctx.user.username, phone=ctx.phone, now=ctx.now
            )
        if result.permanent:
            ctx.notes.note(delivery_code=result.code)
            return Reject(RejectReason.DELIVERY_REJECTED)
        raise BackendFailure(result)
    return None


def code_hash(key: bytes, state: bytes, code: str) -> str:
    """HMAC-SHA256 of a sent code, bound to the challenge's State (hex).

    Args:
        key: the cluster's code-hashing key (derived from the encryption key file).
        state: the State of the challenge the code belongs to.
        code: the digits that were sent.
    """
    return hmac.new(key, state + b"\x00" + code.encode("ascii"), hashlib.sha256).hexdigest()


def sent_code_matches(key: bytes, state: bytes, expected_hash: str, answer: str) -> bool:
    """Compare an answer with the hash of the code that was sent, in constant time."""
    if not expected_hash or not answer.isascii() or not answer.isdigit():
        return False
    return hmac.compare_digest(code_hash(key, state, answer), expected_hash)


def sms_text(template: str, *, code: str, minutes: int, organisation: str) -> str:
    """The text message, from the profile's template.

    Placeholders: ``{code}``, ``{minutes}``, ``{organisation}``.
    """
    return (
        template.replace("{code}", code)
        .replace("{minutes}", str(minutes))
        .replace("{organisation}", organisation)
    )
