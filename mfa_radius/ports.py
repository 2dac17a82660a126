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

    async def count(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first hit.

        Returns:
            The counter's value after this hit (1 for the first).
        """
        ...

    async def peek_count(self, key: str) -> int:
        """Return a counter's value without changing it (0 when absent or expired)."""
        ...

    async def delete(self, *keys: str) -> None:
        """Remove counters or marks (``mfa-radius user unlock``)."""
        ...

    async def publish_result(self, key: str, value: str, ttl: float) -> None:
        """Record the result of an out-of-band step (a keypress on an approve call).

        The value is kept for ``ttl`` seconds and every node waiting on ``key`` learns it at
        once (Redis: SET plus PUBLISH; memory: an event in the same process).
        """
        ...

    async def wait_result(self, key: str, timeout: float) -> str | None:  # noqa: ASYNC109 (waiting is the operation; the caller passes its remaining budget)
        """Wait up to ``timeout`` seconds for :meth:`publish_result` on ``key``, from any node.

        Returns:
            The value, or None when nothing was published in time. A value published before
            the wait began is returned at once.
        """
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
        self,
        username: str,
        *,
        display_name: str = "",
        email: str = "",
        phone: str = "",
        language: str = "",
    ) -> User:
        """Create a user."""
        ...

    async def list_users(self) -> list[User]:
        """Return every user, ordered by username (tokens included)."""
        ...

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable or enable a user."""
        ...

    async def update_user(
        self,
        username: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        language: str | None = None,
    ) -> None:
        """Change a user's contact details or call language (None: unchanged)."""
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


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message or call the provider accepted.

    Attributes:
        provider_id: the provider's id for it (Twilio's Message or Call SID), for the audit.
    """

    provider_id: str


class CodeSender(Protocol):
    """Sends text messages and places calls (Twilio, or a file for labs).

    Every method raises :class:`mfa_radius.errors.DeliveryFailed` (``permanent`` for a
    refused number, otherwise an outage) and never retries a request that may have been
    delivered: one login attempt is at most one message or call.
    """

    async def send_sms(self, to: str, body: str, *, sender: str) -> Delivery:
        """Send ``body`` to the E.164 number ``to`` from ``sender``.

        Args:
            to: E.164 destination.
            body: the text (contains the code: never logged).
            sender: an E.164 number or a Messaging Service SID (``MG...``).
        """
        ...

    async def call(self, to: str, twiml: str, *, caller_id: str) -> Delivery:
        """Place a call to ``to`` that plays ``twiml`` (TwiML: <Say>, <Gather>).

        Args:
            to: E.164 destination.
            twiml: the call's instructions (may contain a code: never logged).
            caller_id: the E.164 number shown to the callee (carriers may drop it).
        """
        ...

    async def close(self) -> None:
        """Release HTTP sessions."""
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
