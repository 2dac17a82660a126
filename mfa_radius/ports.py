"""Interfaces between the orchestration (``engine.py``, ``transport/``) and the outside world.

Each port is a small ``typing.Protocol`` for one job, implemented by an adapter in
``mfa_radius.adapters``; one adapter may implement several (the memory and Redis stores each
implement the four store ports). Every method may raise the port's ``BackendError`` subclass;
none raises a library exception. Callers never ask which adapter they hold: what differs
between an in-process table and a network server (deadlines, pipelining, cluster claims) stays
behind the port. Adapters that do network I/O bound each call themselves, so that a hung peer
releases its resources; the engine adds the request's own deadline on top.

Each port has one contract test module run against every adapter
(``tests/adapters/contract/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mfa_radius.core.messages import ApproveCall, CodeCall, CodeText, Delivery, Message
from mfa_radius.core.model import AuthAttempt, PendingChallenge, PrimaryResult, TotpToken, User

__all__ = [
    "ApproveCall",
    "Challenges",
    "Clock",
    "CodeCall",
    "CodeText",
    "Delivery",
    "EnrolmentStore",
    "Marks",
    "Message",
    "MessageSender",
    "PrimaryAuthenticator",
    "ReplyCache",
    "RequestClaim",
    "ResultBus",
    "SharedState",
    "UserLookup",
]


class Clock(Protocol):
    """Wall-clock time source, replaced by a fake clock in tests."""

    def now(self) -> float:
        """Return the current time as UTC epoch seconds."""
        ...


# -- short-lived shared state ---------------------------------------------------------------


class Challenges(Protocol):
    """Pending challenges under their State's key, with a TTL, shared by every node.

    Keys are opaque strings chosen by the caller; the store namespaces them. Each user
    (``record.username``) holds at most the store's per-user cap of pending challenges: storing
    one more removes that user's oldest, so one user cannot fill the store. A challenge that is
    taken or expired no longer counts. Raises :class:`mfa_radius.errors.StoreUnavailable` when
    the store cannot answer, and its subclass :class:`mfa_radius.errors.StoreFull` when the
    store is at capacity and refuses a new entry (reads still work).
    """

    async def put_challenge(self, key: str, record: PendingChallenge, ttl: float) -> None:
        """Store a pending challenge under ``key`` for ``ttl`` seconds (overwrites).

        A new key for a user who already has the per-user cap of pending challenges removes
        the oldest of them (by first store); overwriting a key keeps its place.
        """
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


class Marks(Protocol):
    """One-time marks and windowed counters: TOTP replay, send limits, lockout.

    Raises :class:`mfa_radius.errors.StoreUnavailable` when the store cannot answer, and
    :class:`mfa_radius.errors.StoreFull` when a new mark or counter does not fit.
    """

    async def mark_once(self, key: str, ttl: float) -> bool:
        """Set a mark that exists for ``ttl`` seconds.

        Returns:
            True for the first caller (on any node); False while the mark exists.
        """
        ...

    async def count(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first hit.

        Returns:
            The counter's value after this hit (1 for the first).
        """
        ...

    async def uncount(self, key: str) -> int:
        """Take one back from a counter: never below zero, its window (TTL) unchanged.

        Used to give back a send that was counted but not made. An absent or expired
        counter stays absent.

        Returns:
            The counter's value after this (0 when absent or expired).
        """
        ...

    async def peek_count(self, key: str) -> int:
        """Return a counter's value without changing it (0 when absent or expired)."""
        ...

    async def delete(self, *keys: str) -> None:
        """Remove counters or marks (``mfa-radius user unlock``)."""
        ...


@dataclass(frozen=True, slots=True)
class RequestClaim:
    """The answer of :meth:`ReplyCache.claim_request`.

    Attributes:
        owner: True when this node must process the request.
        reply: the reply another node already sent (resend it byte for byte), or None.
    """

    owner: bool
    reply: bytes | None = None


class ReplyCache(Protocol):
    """RFC 5080 §2.2.2 duplicate detection across the nodes of a cluster.

    A request is claimed before it is worked on; every claim ends, whatever happens, either
    in :meth:`store_reply` (duplicates then get those bytes) or in :meth:`release_request`
    (a retransmission is then worked on afresh). An in-process store sees one node only, so
    its claims always succeed at once: the endpoint's own reply cache already answers that
    node's duplicates.
    """

    async def claim_request(self, key: str, ttl: float) -> RequestClaim:
        """Claim a request for processing.

        Returns:
            ``owner=True`` for the first claimant; otherwise ``owner=False`` with the reply
            already stored by :meth:`store_reply`, or None while it is still being worked on.
        """
        ...

    async def store_reply(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep the reply of a claimed request so that duplicates get the same bytes.

        Called before the reply is sent: an adapter that does network I/O bounds it tightly,
        so that a slow store delays a reply by a fraction of a second at most.
        """
        ...

    async def release_request(self, key: str) -> None:
        """End a claim that produced no reply, so that a retransmission is worked on again."""
        ...


class ResultBus(Protocol):
    """Results of out-of-band steps (the keypress of an approve call), seen by every node."""

    async def publish_result(self, key: str, value: str, ttl: float) -> None:
        """Record a result; every node waiting on ``key`` learns it at once.

        The value is kept for ``ttl`` seconds (Redis: SET plus PUBLISH; memory: an event in
        the same process).
        """
        ...

    async def wait_result(self, key: str, timeout: float) -> str | None:  # noqa: ASYNC109 (waiting is the operation; the caller passes its remaining budget)
        """Wait up to ``timeout`` seconds for :meth:`publish_result` on ``key``, from any node.

        Returns:
            The value, or None when nothing was published in time. A value published before
            the wait began is returned at once.
        """
        ...


class SharedState(Challenges, Marks, ReplyCache, ResultBus, Protocol):
    """A whole store (memory or Redis) as the composition root holds it.

    Every store port plus its life cycle; parts of the program receive only the port they use.
    """

    async def ping(self) -> None:
        """Check that the store answers (for ``check-config`` and readiness)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# -- enrolment ------------------------------------------------------------------------------


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


# -- messages -------------------------------------------------------------------------------


class MessageSender(Protocol):
    """Delivers text messages and calls (Twilio, or a file for labs).

    Raises :class:`mfa_radius.errors.DeliveryFailed` (``permanent`` for a refused number,
    otherwise an outage) and never retries a request that may have been delivered: one login
    attempt is at most one message or call.
    """

    async def send(self, message: Message) -> Delivery:
        """Deliver one message or place one call."""
        ...

    async def close(self) -> None:
        """Release HTTP sessions."""
        ...


# -- primary ----------------------------------------------------------------------------------


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
