"""The upstream relay: an upstream RADIUS server's own Access-Challenge, passed to the NAS.

Not chosen for a user (``usable`` is always False): the engine starts it when the primary
backend answers with a challenge (an upstream OTP server, a PIN prompt). The NAS sees a State
of ours; the record maps it to the upstream's, which goes back upstream with the user's
answer, so the upstream's State never reaches the NAS and cannot be replayed around us.
"""

from __future__ import annotations

from mfa_radius.core import prompts
from mfa_radius.core.challenges import STATE_BYTES, IssueChallenge, challenge_key
from mfa_radius.core.effects import Steps
from mfa_radius.core.factors.base import Context, Started, Verdict
from mfa_radius.core.model import (
    ChallengeReply,
    Factor,
    PendingChallenge,
    PrimaryChallenge,
    User,
)
from mfa_radius.core.policy import ClientPolicy


class UpstreamRelay:
    """The upstream-relay plug-in: its answers are checked upstream, not here."""

    factor = Factor.UPSTREAM
    at_prompt = False

    def usable(self, user: User, phone_ok: bool) -> bool:
        """Never offered: only the upstream's own challenge starts it."""
        return False

    def start(self, ctx: Context) -> Steps[Started]:
        """Not startable for a user (see :func:`relay`).

        Raises:
            ValueError: always; the engine relays through :func:`relay` instead.
        """
        yield from ()  # a generator with no effects
        raise ValueError("the upstream relay starts from the upstream's challenge")

    def check(self, ctx: Context, record: PendingChallenge, answer: str) -> Steps[Verdict]:
        """Answers to a relayed challenge go back upstream: never a local match."""
        yield from ()  # a generator with no effects
        return Verdict.NO_MATCH


def relay(
    primary: PrimaryChallenge,
    policy: ClientPolicy,
    *,
    username: str,
    now: float,
    state: bytes,
) -> IssueChallenge:
    """Relay the upstream server's own Access-Challenge under a State of ours.

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
