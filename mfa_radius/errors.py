"""The one exception hierarchy of mfa-radius.

Outcomes of a login (wrong password, wrong code, expired State) are values, not exceptions:
see :class:`mfa_radius.core.model.RejectReason`. Exceptions here mean that something *failed*::

    MfaRadiusError
    ├── ConfigError            start-up only; names the file and the key path; CLI exits 2
    ├── MalformedPacket        remote input; the endpoint turns it into Drop(reason)
    └── BackendError           a dependency failed (``.backend`` names it)
        ├── StoreUnavailable   the challenge store (Redis)
        │   └── StoreFull      the store is at capacity: never a fail-mode case
        ├── EnrolmentUnavailable  the enrolment database
        ├── DeliveryFailed     an SMS or call was not accepted
        └── PrimaryUnavailable upstream RADIUS timeout, LDAP down
    NotFound, AlreadyExists    admin operations on the enrolment database
    ConfigError
    └── KeyUnavailable         the secret-encryption key is missing or wrong (start-up error)

Exception texts never carry a secret (password, code, TOTP seed, shared secret, token).
Adapters translate their library's exceptions with :func:`map_errors`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class MfaRadiusError(Exception):
    """Base of every exception raised on purpose by mfa-radius."""


class ConfigError(MfaRadiusError):
    """The configuration is invalid; raised at start-up only.

    Args:
        message: what is wrong, naming the file and the key path.
    """


class MalformedPacket(MfaRadiusError):
    """A datagram is not a well-formed RADIUS packet (RFC 2865 §3, §5).

    Args:
        reason: a short stable token used as the drop reason (for example ``"bad_length"``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendError(MfaRadiusError):
    """A dependency failed or did not answer in time.

    Args:
        backend: the name of the failing system (``"redis"``, ``"sqlite"``, ``"upstream:nps1"``).
        detail: a short description without any secret.
    """

    def __init__(self, backend: str, detail: str = "") -> None:
        super().__init__(f"{backend}: {detail}" if detail else backend)
        self.backend = backend
        self.detail = detail


class StoreUnavailable(BackendError):
    """The challenge store (Redis) is down, slow or refused the command."""


class StoreFull(StoreUnavailable):
    """The store is at capacity and refuses new entries; reads still work.

    Raised by the in-process store at ``max_entries`` and by Redis at ``maxmemory`` with the
    ``noeviction`` policy (``OOM command not allowed``). Unlike an outage, a full store can be
    brought about from outside (logins with one known password fill it), so the login engine
    never answers it with the client's fail mode: the login is rejected with ``store_full``.
    It subclasses :class:`StoreUnavailable` so that best-effort callers (the reply cache of
    the request handler) keep treating it as "the store could not do it".
    """


class EnrolmentUnavailable(BackendError):
    """The enrolment database could not be read or written."""


class DeliveryFailed(BackendError):
    """An SMS or a call could not be handed to the provider.

    Args:
        backend: the provider (``"twilio"``, ``"file"``).
        detail: a short description without the phone number or any token.
        permanent: True when retrying cannot help (bad or unsubscribed number, a 4xx answer):
            the login is rejected with its own reason; False for an outage (5xx, 429,
            timeout), where the profile's fail mode decides.
        code: the provider's error code, when it gave one (Twilio's 21211, ...).
        maybe_sent: True when the request reached the provider and its fate is unknown (no
            answer in time, an unreadable 2xx): the message may have gone out, so it keeps
            counting against the send limits.
    """

    def __init__(
        self,
        backend: str,
        detail: str = "",
        *,
        permanent: bool = False,
        code: int | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(backend, detail)
        self.permanent = permanent
        self.code = code
        self.maybe_sent = maybe_sent


class PrimaryUnavailable(BackendError):
    """The primary password backend (upstream RADIUS, LDAP) did not answer in time."""


@contextmanager
def map_errors(
    mapping: Mapping[type[BaseException], type[BackendError]], backend: str
) -> Iterator[None]:
    """Translate library exceptions into our hierarchy, keeping the cause.

    Only the exception *class name* goes into the new message: library messages may quote
    arguments (a password, a URL with credentials), so they are not copied.

    Args:
        mapping: library exception class -> our BackendError subclass; first match wins.
        backend: the name stored on the raised error.

    Raises:
        BackendError: the mapped subclass, ``from`` the original exception.
    """
    try:
        yield
    except BackendError:
        raise
    except tuple(mapping) as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                raise target(backend, type(exc).__name__) from exc
        raise  # pragma: no cover - the except clause only catches mapped classes


class NotFound(MfaRadiusError):
    """An admin operation named a user or token that does not exist."""


class AlreadyExists(MfaRadiusError):
    """An admin operation would create a user that already exists."""


class KeyUnavailable(ConfigError):
    """The secret-encryption key is missing, unreadable, or does not decrypt stored secrets."""
