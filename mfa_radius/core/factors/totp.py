"""TOTP (RFC 6238) from an authenticator app or an OATH hardware token.

Nothing is sent: starting the factor only asks for the code. A right code is accepted once,
cluster-wide: its replay mark (token and time step, RFC 6238 §5.2 "MUST NOT accept the second
attempt of the same OTP") is set in the shared store and a second use is ``REPLAYED``.
"""

from __future__ import annotations

from mfa_radius.core import otp
from mfa_radius.core.effects import MarkOnce, Steps, ask
from mfa_radius.core.factors.base import Context, Started, Verdict
from mfa_radius.core.model import Factor, PendingChallenge, User
from mfa_radius.core.policy import ClientPolicy


class Totp:
    """The TOTP factor plug-in."""

    factor = Factor.TOTP
    at_prompt = True

    def usable(self, user: User, phone_ok: bool) -> bool:
        """Usable with at least one enrolled token."""
        return bool(user.tokens)

    def start(self, ctx: Context) -> Steps[Started]:
        """Nothing to send: the prompt asks for the app's code."""
        yield from ()  # a generator with no effects
        return ""

    def check(self, ctx: Context, record: PendingChallenge, answer: str) -> Steps[Verdict]:
        """Match the answer against the user's tokens within the window, then mark it used."""
        return (yield from verify(ctx.user, answer, ctx.policy, now=ctx.now))


def verify(user: User, code: str, policy: ClientPolicy, *, now: float) -> Steps[Verdict]:
    """Check a code against every token of ``user``; set its replay mark on a match.

    Args:
        user: the enrolled user.
        code: the digits as typed.
        policy: the client's settings (look-back and look-forward windows).
        now: the request's time, epoch seconds.

    Returns:
        MATCH for a first use, REPLAYED for a code already used, NO_MATCH otherwise.
    """
    match = otp.check_totp(
        user.tokens,
        code,
        now=now,
        lookback_steps=policy.lookback_steps,
        lookforward_steps=policy.lookforward_steps,
    )
    if match is None:
        return Verdict.NO_MATCH
    ttl = otp.replay_ttl(match, now=now, lookback_steps=policy.lookback_steps)
    fresh = yield from ask(MarkOnce(otp.replay_key(match), ttl))
    return Verdict.MATCH if fresh else Verdict.REPLAYED
