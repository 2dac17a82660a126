"""Interfaces between the orchestration (``service.py``, ``server.py``) and the outside world.

Each port is a ``typing.Protocol`` implemented by an adapter in ``mfa_radius.adapters``.
Every method may raise the port's ``BackendError`` subclass; none raises a library exception.
Callers put a deadline on every await (``asyncio.timeout``); adapters also set their own
socket timeouts so that a hung peer releases its resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mfa_radius.core.model import AuthAttempt, PendingChallenge, PrimaryResult, TotpToken, User


class Clock(Protocol):
    """Wall-clock time source, replaced by a fake clock in tests."""

    def now(self) -> float:
        """Return the current time as UTC epoch seconds."""
        ...


@dataclass(frozen=True, slots=True)
class RequestClaim:
    """The answer of :meth:`ChallengeStore.claim_request`.

    Attributes:
        owner: True when this node must process the request.
        reply: the reply another node already sent (resend it byte for byte), or None.
    """

    owner: bool
    reply: bytes | None = None


class ChallengeStore(Protocol):
    """Short-lived state shared by every node: pending challenges, replay marks, reply cache.

    Keys are opaque strings chosen by the caller; the store namespaces them. Every key written
    has a TTL. Raises :class:`mfa_radius.errors.StoreUnavailable` when the store cannot answer.
    """

    shared: bool
    """True when other nodes see this store over the network: its calls may block (they get a
    deadline) and duplicate requests must be claimed in it. False for an in-process store,
    whose calls never wait on I/O and which only this node sees."""

    async def put_challenge(self, key: str, record: PendingChallenge, ttl: float) -> None:
        """Store a pending challenge under ``key`` for ``ttl`` seconds (overwrites)."""
        ...

    async def get_challenge(self, key: str) -> PendingChallenge | None:
        """Return the pending challenge under ``key`` without consuming it, or None."""
        ...

    async def take_challenge(self, key: str) -> PendingChallenge | None:
        """Remove and return the challenge atomically: exactly one caller, on any node, gets it."""
        ...

    async def add_attempt(self, key: str) -> int | None:
        """Count one wrong code on the challenge atomically, keeping its TTL.

        Returns:
            The new attempt count, or None when the challenge is gone.
        """
        ...

    async def mark_once(self, key: str, ttl: float) -> bool:
        """Set a mark that exists for ``ttl`` seconds.

        Returns:
            True for the first caller (on any node); False while the mark exists.
        """
        ...

    async def claim_request(self, key: str, ttl: float) -> RequestClaim:
        """Claim a request for processing (RFC 5080 §2.2.2 duplicate detection across nodes).

        Returns:
            ``owner=True`` for the first claimant; otherwise ``owner=False`` with the reply
            already stored by :meth:`store_reply`, or None while it is still being worked on.
        """
        ...

    async def store_reply(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep the reply of a claimed request so that duplicates get the same bytes."""
        ...

    async def ping(self) -> None:
        """Check that the store answers (for ``check-config`` and readiness)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class UserLookup(Protocol):
    """Finds a user and their enrolled factors on the login path.

    Raises :class:`mfa_radius.errors.EnrolmentUnavailable` when the database is down.
    """

    async def find_user(self, username: str) -> User | None:
        """Return the user with their decrypted tokens, or None when not enrolled."""
        ...


class EnrolmentStore(Protocol):
    """Users, their enrolled factors and local passwords: what must survive a restart.

    Read methods raise :class:`mfa_radius.errors.EnrolmentUnavailable` when the database is
    down; admin methods raise :class:`mfa_radius.errors.NotFound` /
    :class:`mfa_radius.errors.AlreadyExists` for a missing or duplicate user.
    """

    async def find_user(self, username: str) -> User | None:
        """Return the user with their decrypted tokens, or None when not enrolled."""
        ...

    async def find_users(self, usernames: list[str]) -> dict[str, User]:
        """Return the enrolled users among ``usernames`` in one query, by username."""
        ...

    async def get_password_hash(self, username: str) -> str | None:
        """Return the user's argon2id hash for the local primary backend, or None."""
        ...

    async def add_user(
        self, username: str, *, display_name: str = "", email: str = "", phone: str = ""
    ) -> User:
        """Create a user."""
        ...

    async def list_users(self) -> list[User]:
        """Return every user, ordered by username (tokens included)."""
        ...

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable or enable a user."""
        ...

    async def remove_user(self, username: str) -> None:
        """Delete a user, their tokens and their password."""
        ...

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Set the local primary password (already hashed with argon2id)."""
        ...

    async def add_totp(
        self,
        username: str,
        secret: bytes,
        *,
        digits: int = 6,
        time_step: int = 30,
        algorithm: str = "sha1",
        serial: str = "",
    ) -> TotpToken:
        """Enrol a TOTP token; the secret is encrypted before it is written."""
        ...

    async def remove_tokens(self, username: str) -> int:
        """Delete every token of the user; return how many were removed."""
        ...

    async def check(self) -> None:
        """Verify the database answers and the key decrypts stored secrets.

        Raises:
            KeyUnavailable: the key does not decrypt what is stored.
            EnrolmentUnavailable: the database cannot be read.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class PrimaryAuthenticator(Protocol):
    """Checks the first factor: the user's password.

    Raises :class:`mfa_radius.errors.PrimaryUnavailable` when the backend cannot answer.
    """

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Check ``password`` for ``attempt.username``.

        Args:
            attempt: the request (attributes may be forwarded upstream).
            password: the password part (in append mode: without the code), or the user's
                answer to an upstream challenge.
            upstream_state: the State of the upstream's own Access-Challenge this request
                answers (upstream RADIUS only); None for a first request.
        """
        ...
