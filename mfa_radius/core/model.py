"""Values of the MFA domain: users, tokens, attempts, pending challenges and outcomes.

Everything here is a frozen value with no I/O. Reject and accept reasons are stable strings:
admins and log pipelines key on them, so renaming one is a breaking change (see CHANGELOG).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

Attribute = tuple[int, bytes]
"""A RADIUS attribute as carried through the MFA logic: type number and raw value.

The same shape as ``mfa_radius.radius.packet.Attribute``; spelled here so that ``core`` does not
import the wire layer (the two pure layers are independent).
"""


class Factor(StrEnum):
    """Second factors a user can be challenged with."""

    TOTP = "totp"  #: RFC 6238 time-based code from an app or an OATH token
    SMS = "sms"  #: one-time code sent by text message
    VOICE = "voice"  #: one-time code read out by a phone call
    APPROVE = "approve"  #: a call that asks the user to press a key
    UPSTREAM = "upstream"  #: the upstream RADIUS server's own challenge, relayed


class Mode(StrEnum):
    """How a client (NAS) runs the second factor."""

    CHALLENGE = "challenge"  #: Access-Challenge asks for the code in a second round
    APPEND = "append"  #: the code is appended to the password in one request
    NONE = "none"  #: primary check only (a NAS that must not do MFA)
    APPROVE = "approve"  #: a call asks the user to press a key (clients without a prompt)


class FailMode(StrEnum):
    """What a backend failure after a correct password means (Duo's ``failmode`` words)."""

    SECURE = "secure"  #: reject the login
    SAFE = "safe"  #: accept the login without a second factor, logged


class Unenrolled(StrEnum):
    """What happens to a user who passed the primary check but has no second factor."""

    REJECT = "reject"  #: Access-Reject, logged as ``not_enrolled``
    ACCEPT = "accept"  #: Access-Accept without MFA, logged as ``unenrolled_allowed``


class RejectReason(StrEnum):
    """Why a login was rejected. Stable values: log pipelines key on them."""

    BAD_PASSWORD = "bad_password"  # noqa: S105 (a reason name, not a password)  #: primary password wrong
    UNKNOWN_USER = "unknown_user"  #: no such user (the client is not told which of the two)
    USER_DISABLED = "user_disabled"  #: the user exists but is disabled
    MISSING_PASSWORD = "missing_password"  # noqa: S105 (a reason name)  #: no User-Password (or an empty one) in the request
    NOT_ENROLLED = "not_enrolled"  #: no second factor enrolled and the client says reject
    BAD_CODE = "bad_code"  #: wrong code on the last allowed attempt
    BAD_CODE_FORMAT = "bad_code_format"  #: append mode without a delimiter and code
    CODE_REPLAYED = "code_replayed"  #: a TOTP code already used for this token and time step
    TOO_MANY_ATTEMPTS = "too_many_attempts"  #: the pending challenge ran out of attempts
    UNKNOWN_STATE = "unknown_state"  #: State not found: expired, already used, or forged
    STATE_MISMATCH = "state_mismatch"  #: State belongs to another user or client
    STORE_UNAVAILABLE = "store_unavailable"  #: challenge store down, fail mode secure
    STORE_FULL = "store_full"  #: the store is at capacity; rejected in every fail mode
    ENROLMENT_UNAVAILABLE = "enrolment_unavailable"  #: enrolment database down, fail mode secure
    PRIMARY_UNAVAILABLE = "primary_unavailable"  #: primary backend down, fail mode secure
    PRIMARY_REJECTED = "primary_rejected"  #: the upstream server rejected the password
    TIMEOUT = "timeout"  #: the client's response window ran out
    GROUP_NOT_ALLOWED = "group_not_allowed"  #: not in the profile's require_groups
    LOCKED_OUT = "locked_out"  #: too many wrong codes; locked for a while (``user unlock``)
    SEND_LIMITED = "send_limited"  #: a text/call limit was reached; nothing was sent
    DELIVERY_REJECTED = "delivery_rejected"  #: the provider refused the number (4xx)
    DELIVERY_UNAVAILABLE = "delivery_unavailable"  #: the provider failed (5xx, 429, timeout)
    APPROVAL_DENIED = "approval_denied"  #: the user pressed another key on the approve call
    APPROVAL_TIMEOUT = "approval_timeout"  #: no key pressed within the response window
    FRAUD_REPORTED = "fraud_reported"  #: the user reported the attempt; user locked out


class AcceptReason(StrEnum):
    """Why a login was accepted. Stable values: log pipelines key on them."""

    MFA_OK = "mfa_ok"  #: password and second factor verified
    PRIMARY_ONLY = "primary_only"  #: the client's mode is ``none``
    UNENROLLED_ALLOWED = "unenrolled_allowed"  #: no factor enrolled and the client allows it
    FAIL_SAFE = "fail_safe"  #: a backend failed after the password and fail mode is safe
    EXEMPT = "exempt"  #: the user or one of their groups is exempt from the second factor


@dataclass(frozen=True, slots=True)
class TotpToken:
    """An enrolled TOTP token (RFC 6238 §4 parameters).

    Attributes:
        token_id: stable identifier, used in replay marks.
        secret: the shared secret, raw bytes (never logged).
        digits: code length (6 or 8).
        time_step: seconds per step (X in RFC 6238 §4.1), usually 30.
        algorithm: ``sha1``, ``sha256`` or ``sha512`` (RFC 6238 §1.2).
        serial: the hardware token's serial, or empty for an app.
    """

    token_id: str
    secret: bytes = field(repr=False)
    digits: int = 6
    time_step: int = 30
    algorithm: str = "sha1"
    serial: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """A user of the enrolment database with the factors enrolled for them.

    Attributes:
        user_id: stable unique id (the audit line's ``user_id``).
        username: the normalised login name.
        display_name: for the audit line.
        email: for the audit line.
        phone: E.164 number or empty.
        disabled: a disabled user is rejected after the primary check.
        tokens: enrolled TOTP tokens.
        language: the language calls speak to this user (``de-DE``); empty for the profile's.
    """

    user_id: str
    username: str
    display_name: str = ""
    email: str = ""
    phone: str = ""
    disabled: bool = False
    tokens: tuple[TotpToken, ...] = ()
    language: str = ""

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The second factors this user has enrolled (before profile and phone checks)."""
        phone = (Factor.SMS, Factor.VOICE, Factor.APPROVE) if self.phone else ()
        return ((Factor.TOTP,) if self.tokens else ()) + phone


@dataclass(frozen=True, slots=True)
class PendingChallenge:
    """A challenge waiting for its code, as kept in the challenge store under its State.

    No secret in clear: the TOTP secret stays in the enrolment database; a sent code would be
    kept only as a keyed hash.

    Attributes:
        username: the normalised user the challenge was issued to.
        client: the configured name of the NAS that started it.
        factor: the factor being asked for.
        created: epoch seconds when issued.
        expires: epoch seconds after which the State is refused.
        attempts: wrong codes entered so far.
        reply_attributes: attributes to return on the final Access-Accept.
        code_hash: keyed hash of a sent one-time code (SMS/voice), hex; empty for TOTP.
        upstream_state: the upstream server's State when this record relays its challenge.
        phone: the E.164 number codes go to (so any node can send another one).
        options: the factors the user may switch to at the prompt.
    """

    username: str
    client: str
    factor: Factor
    created: float
    expires: float
    attempts: int = 0
    reply_attributes: tuple[Attribute, ...] = ()
    code_hash: str = ""
    upstream_state: bytes = b""
    phone: str = ""
    options: tuple[Factor, ...] = ()

    def to_json_dict(self) -> dict[str, object]:
        """Return a JSON-safe dict (bytes as hex) for the challenge store."""
        return {
            "u": self.username,
            "c": self.client,
            "f": self.factor.value,
            "t0": self.created,
            "t1": self.expires,
            "n": self.attempts,
            "a": [[t, v.hex()] for t, v in self.reply_attributes],
            "h": self.code_hash,
            "us": self.upstream_state.hex(),
            "p": self.phone,
            "o": [f.value for f in self.options],
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, object]) -> PendingChallenge:
        """Rebuild a record written by :meth:`to_json_dict`.

        Raises:
            ValueError: when a field is missing or has the wrong type.
        """
        try:
            attrs_raw = data.get("a", [])
            attrs = tuple((int(str(t)), bytes.fromhex(str(v))) for t, v in _as_list(attrs_raw))
            return cls(
                username=str(data["u"]),
                client=str(data["c"]),
                factor=Factor(str(data["f"])),
                created=float(str(data["t0"])),
                expires=float(str(data["t1"])),
                attempts=int(str(data.get("n", 0))),
                reply_attributes=attrs,
                code_hash=str(data.get("h", "")),
                upstream_state=bytes.fromhex(str(data.get("us", ""))),
                phone=str(data.get("p", "")),
                options=tuple(Factor(str(f)) for f in _as_strings(data.get("o", []))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad pending challenge record: {type(exc).__name__}") from exc


def _as_strings(value: object) -> list[str]:
    """Check the JSON shape of a stored list of names."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("names")
    return value


def _as_list(value: object) -> list[list[object]]:
    """Check the JSON shape of a stored attribute list."""
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 2 for v in value):
        raise TypeError("attributes")
    return value


@dataclass(frozen=True, slots=True)
class Accept:
    """Access-Accept.

    Attributes:
        reason: why it was accepted.
        attributes: reply attributes to return (kept from the primary backend).
    """

    reason: AcceptReason
    attributes: tuple[Attribute, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """Access-Reject.

    Attributes:
        reason: why it was rejected (logged, never sent to the client).
        message: an optional Reply-Message for the user.
    """

    reason: RejectReason
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ChallengeReply:
    """Access-Challenge (RFC 2865 §4.4).

    Attributes:
        state: the State attribute value (16+ random bytes).
        prompt: the Reply-Message text shown to the user.
        retry_reason: why the user is asked again (a wrong or replayed code); None for a
            first challenge.
    """

    state: bytes
    prompt: str
    retry_reason: RejectReason | None = None


Outcome = Accept | Reject | ChallengeReply
"""What one Access-Request comes to."""


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    """One Access-Request as the MFA logic sees it.

    Attributes:
        username: the normalised User-Name (enrolment key).
        raw_username: User-Name as received.
        password: the revealed User-Password; None when absent.
        state: the State attribute of a second round; None in a first round.
        client: the configured name of the NAS.
        src_ip: the NAS's source address.
        request_attributes: every attribute of the request (User-Password still hidden).
    """

    username: str
    raw_username: str
    password: bytes | None = field(repr=False)
    state: bytes | None
    client: str
    src_ip: str
    request_attributes: tuple[Attribute, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """What a directory says about a user at login time (LDAP / Active Directory).

    The NAS extension for Entra MFA takes the phone number from the directory at login time;
    so can we. These values feed the audit line, group policy, and phone factors.

    Attributes:
        dn: the user's distinguished name.
        display_name: for the audit line.
        email: for the audit line.
        phones: E.164 or raw phone numbers, in configured attribute order.
        groups: group names (DNs or CNs as configured), case-folded, nested ones included
            where the directory resolves nesting.
    """

    dn: str = ""
    display_name: str = ""
    email: str = ""
    phones: tuple[str, ...] = ()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PrimaryAccept:
    """The primary backend accepted the password.

    Attributes:
        attributes: reply attributes the backend granted (Class, Filter-Id, ...), kept for the
            final Access-Accept.
        identity: directory attributes of the user, when the backend reads them.
        upstream: the home server that answered (upstream RADIUS only; audit ``upstream``).
    """

    attributes: tuple[Attribute, ...] = ()
    identity: Identity | None = None
    upstream: str = ""


@dataclass(frozen=True, slots=True)
class PrimaryReject:
    """The primary backend rejected the password.

    Attributes:
        reason: ``bad_password``, ``unknown_user`` or ``primary_rejected``.
        message: the backend's Reply-Message, if any.
        upstream: the home server that answered (upstream RADIUS only).
    """

    reason: RejectReason
    message: str | None = None
    upstream: str = ""


@dataclass(frozen=True, slots=True)
class PrimaryChallenge:
    """The primary backend (an upstream RADIUS server) answered with its own Access-Challenge.

    The proxy relays it to the NAS under a State of its own, keeping ``state`` to send back
    upstream with the user's answer.

    Attributes:
        state: the upstream's State value (opaque; sent back unchanged).
        prompt: the upstream's Reply-Message text.
        upstream: the home server that sent it.
    """

    state: bytes
    prompt: str = ""
    upstream: str = ""


PrimaryResult = PrimaryAccept | PrimaryReject | PrimaryChallenge
"""What a primary backend says about a password."""
