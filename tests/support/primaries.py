"""A password backend that stands in for an upstream server (implements PrimaryAuthenticator).

It plays the outside system that owns the password (NPS, FreeRADIUS, a directory): it
accepts one password and grants fixed reply attributes, so the tests can follow those
attributes through the challenge round.
"""

from __future__ import annotations

from mfa_radius.core.model import (
    AuthAttempt,
    PrimaryAccept,
    PrimaryReject,
    PrimaryResult,
    RejectReason,
)
from mfa_radius.errors import PrimaryUnavailable


class StaticPrimary:
    """Accepts ``password`` for every user, granting ``attributes``; counts its calls.

    Args:
        password: the one accepted password.
        attributes: reply attributes granted on accept.
    """

    def __init__(self, password: bytes, attributes: tuple[tuple[int, bytes], ...] = ()) -> None:
        self.password = password
        self.attributes = attributes
        self.calls = 0
        self.down = False

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Accept the configured password; raise PrimaryUnavailable while ``down``."""
        self.calls += 1
        if self.down:
            raise PrimaryUnavailable("static", "down")
        if password == self.password:
            return PrimaryAccept(self.attributes)
        return PrimaryReject(RejectReason.BAD_PASSWORD)
