"""The local primary backend: passwords kept as argon2id hashes in the enrolment database.

Responsibility: implement :class:`mfa_radius.ports.PrimaryAuthenticator` for users whose
password mfa-radius holds itself, and hash new passwords for the CLI (:func:`hash_password`).

How it keeps its promises:

* **Event loop stays free.** An argon2id verify costs tens of milliseconds of CPU and 64 MiB
  (RFC 9106 §4 "second recommended option", argon2-cffi's default), so it runs in a bounded
  thread pool; the bound also caps the memory that a burst of logins can claim.
* **Timing does not reveal whether a user exists.** An unknown user, or one without a
  password, still costs one full verify against a dummy hash with the same parameters.
* **Constant-time comparison** happens inside argon2 itself; an empty password is rejected
  before any hashing (a NAS sending an empty User-Password is not asking to log in).

Not done: re-hashing on login when the parameters change (``check_needs_rehash``) — the
primary check only reads the database; ``mfa-radius`` user commands write new hashes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from concurrent.futures import Executor, ThreadPoolExecutor

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from mfa_radius.core.model import (
    AuthAttempt,
    PrimaryAccept,
    PrimaryReject,
    PrimaryResult,
    RejectReason,
)
from mfa_radius.errors import EnrolmentUnavailable, PrimaryUnavailable
from mfa_radius.ports import EnrolmentStore

PARAMETERS = profiles.RFC_9106_LOW_MEMORY
"""argon2id, t=3, m=64 MiB, p=4: RFC 9106 §4's recommendation for memory-constrained hosts."""

BACKEND = "argon2"
"""The ``backend`` name of :class:`PrimaryUnavailable` for a stored hash that is not argon2."""

_HASHER = PasswordHasher.from_parameters(PARAMETERS)


def hash_password(password: str) -> str:
    """Hash a password for :meth:`mfa_radius.ports.EnrolmentStore.set_password_hash`.

    Blocking (tens of milliseconds): meant for the CLI, not for the event loop.

    Args:
        password: the clear-text password.

    Returns:
        A PHC string ``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``.

    Raises:
        ValueError: the password is empty.
    """
    if not password:
        raise ValueError("the password is empty")
    return _HASHER.hash(password)


def _dummy_hash() -> str:
    """Return a well-formed hash no password matches, with the real cost parameters.

    Built from random bytes instead of by hashing, so that construction costs nothing; a
    verify against it runs the full argon2 computation before the comparison fails.
    """

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii").rstrip("=")

    p = PARAMETERS
    return (
        f"$argon2id$v={p.version}$m={p.memory_cost},t={p.time_cost},p={p.parallelism}"
        f"${b64(secrets.token_bytes(p.salt_len))}${b64(secrets.token_bytes(p.hash_len))}"
    )


def _matches(password_hash: str, password: bytes) -> bool:
    """Run one argon2 verify (in a worker thread)."""
    try:
        return _HASHER.verify(password_hash, password)
    except VerificationError:
        return False


class Argon2PrimaryAuthenticator:
    """:class:`mfa_radius.ports.PrimaryAuthenticator` against argon2id hashes.

    Args:
        enrolments: where the hashes are (``get_password_hash``).
        executor: the bounded pool that runs argon2; by default a private pool of
            ``min(4, cpu_count)`` threads, shut down by :meth:`close`. A given executor is
            left to its owner.
    """

    def __init__(self, enrolments: EnrolmentStore, *, executor: Executor | None = None) -> None:
        self._enrolments = enrolments
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="argon2"
        )
        self._dummy = _dummy_hash()

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Check ``password`` against the stored hash of ``attempt.username``.

        Args:
            attempt: the request; only its username is used.
            password: the password as received (bytes; hashes were made from its UTF-8).
            upstream_state: ignored: the local backend never challenges.

        Returns:
            :class:`PrimaryAccept`, or :class:`PrimaryReject` with ``missing_password``,
            ``unknown_user`` (no such user or no password set) or ``bad_password``.

        Raises:
            PrimaryUnavailable: the enrolment database cannot be read, or the stored hash is
                not an argon2 hash.
        """
        if not password:
            return PrimaryReject(RejectReason.MISSING_PASSWORD)
        try:
            stored = await self._enrolments.get_password_hash(attempt.username)
        except EnrolmentUnavailable as exc:
            raise PrimaryUnavailable(exc.backend, exc.detail) from exc
        loop = asyncio.get_running_loop()
        if stored is None:
            await loop.run_in_executor(self._executor, _matches, self._dummy, password)
            return PrimaryReject(RejectReason.UNKNOWN_USER)
        try:
            ok = await loop.run_in_executor(self._executor, _matches, stored, password)
        except InvalidHashError as exc:
            raise PrimaryUnavailable(BACKEND, "the stored password hash is not argon2") from exc
        return PrimaryAccept() if ok else PrimaryReject(RejectReason.BAD_PASSWORD)

    def close(self) -> None:
        """Shut the private thread pool down (a given executor is left running)."""
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
