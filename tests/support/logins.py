"""Logins through the real engine, for tests that look at outcomes.

``Logins`` wires :class:`mfa_radius.engine.Engine` to real stores and a real enrolment
database the way ``app.py`` does, and returns each request's outcome (``decide`` returns it
with its audit record; most tests look only at the outcome).
"""

from __future__ import annotations

import structlog
from structlog.typing import FilteringBoundLogger

from mfa_radius.core.login import Decision, Settings
from mfa_radius.core.model import AuthAttempt, Outcome
from mfa_radius.deadlines import Deadlines
from mfa_radius.engine import Engine, Ports, Profile, Timeouts
from mfa_radius.ports import Clock, MessageSender, SharedState, UserLookup

LOG: FilteringBoundLogger = structlog.get_logger("tests")


class Logins:
    """An engine over real ports; ``authenticate`` returns the outcome of one request."""

    def __init__(
        self,
        *,
        users: UserLookup,
        store: SharedState,
        clock: Clock,
        settings: Settings | None = None,
        sender: MessageSender | None = None,
        timeouts: Timeouts | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.engine = Engine(
            ports=Ports(users=users, challenges=store, marks=store, results=store, sender=sender),
            settings=settings or Settings(code_key=b"k" * 32),
            clock=clock,
            timeouts=timeouts or Timeouts(enrolment=2.0, primary=5.0, delivery=2.0),
            deadlines=deadlines or Deadlines(resolution=0.01),
        )

    async def decide(self, attempt: AuthAttempt, profile: Profile) -> Decision:
        """The decision with its audit record."""
        return await self.engine.decide(attempt, profile, LOG)

    async def authenticate(self, attempt: AuthAttempt, profile: Profile) -> Outcome:
        """The outcome alone."""
        return (await self.decide(attempt, profile)).outcome
