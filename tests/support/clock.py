"""A clock the tests move by hand (implements mfa_radius.ports.Clock)."""

from __future__ import annotations


class FakeClock:
    """Wall-clock time that only moves when a test calls :meth:`advance`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the fake current time (UTC epoch seconds)."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._now += seconds

    def set(self, when: float) -> None:
        """Jump to an absolute time."""
        self._now = when
