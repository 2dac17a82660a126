"""The approve call: a phone call that asks the user to press a key (RD Gateway, no prompt).

Twilio posts the keypress to the webhook of whichever node it reaches; that node publishes
the result on the result bus, and the node holding the Access-Request wakes at once. The wait
ends a margin before the NAS's response window, so the answer still reaches the NAS. Pressing
9 reports fraud: the login is refused and the user locked for the longest lockout.
"""

from __future__ import annotations

from mfa_radius.core.call_result import CallResult
from mfa_radius.core.effects import BackendFailure, Steps, WaitResult, ask
from mfa_radius.core.factors.base import Context, Started, Verdict
from mfa_radius.core.factors.sent_code import admit, deliver
from mfa_radius.core.limits import lock_for_fraud
from mfa_radius.core.messages import ApproveCall
from mfa_radius.core.model import (
    Accept,
    AcceptReason,
    Factor,
    PendingChallenge,
    Reject,
    RejectReason,
    User,
)

APPROVE_MARGIN = 0.3
"""Seconds kept back from the window when waiting for a keypress, to send the answer."""


class Approve:
    """The approve-call plug-in."""

    factor = Factor.APPROVE
    at_prompt = False

    def usable(self, user: User, phone_ok: bool) -> bool:
        """Usable with a valid number in an allowed region."""
        return phone_ok

    def start(self, ctx: Context) -> Steps[Started]:
        """Call the user and wait, within the window, for their key.

        Returns:
            Accept when the user pressed 1; Reject otherwise (denied, no key in time, fraud
            reported, a send limit, a refused number).

        Raises:
            BackendFailure: no provider or webhook is configured, the provider is down, or the
                store could not be used (the fail mode decides).
        """
        refused = yield from admit(
            ctx,
            Factor.APPROVE,
            configured=ctx.settings.can_approve,
            missing="approve calls need [twilio] and [webhook]",
        )
        if refused is not None:
            return refused
        pol = ctx.policy
        call = ApproveCall(
            to=ctx.phone,
            token=ctx.fresh.token,
            organisation=pol.organisation,
            language=ctx.user.language or pol.language,
            caller_id=pol.voice_caller_id,
            gather_seconds=ctx.settings.gather_seconds,
        )
        refused = yield from deliver(call, ctx)
        if refused is not None:
            return refused
        result = yield from ask(WaitResult(ctx.fresh.token, until=ctx.deadline - APPROVE_MARGIN))
        if result == CallResult.APPROVE:
            return Accept(AcceptReason.MFA_OK, ctx.attributes)
        if result == CallResult.FRAUD:
            ctx.notes.notice("fraud_reported")
            try:
                yield from lock_for_fraud(ctx.user.username, ctx.settings.lockout)
            except BackendFailure as exc:
                # The user said the attempt is not theirs: refuse it even when the lock
                # cannot be written (a store outage must not turn into fail-safe accept).
                ctx.notes.notice("fraud_lock_failed", error=exc.failed.detail)
            return Reject(RejectReason.FRAUD_REPORTED)
        if result is None:
            return Reject(RejectReason.APPROVAL_TIMEOUT)
        return Reject(RejectReason.APPROVAL_DENIED)

    def check(self, ctx: Context, record: PendingChallenge, answer: str) -> Steps[Verdict]:
        """Nothing is typed for an approve call."""
        yield from ()  # a generator with no effects
        return Verdict.NO_MATCH
