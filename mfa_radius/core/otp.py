"""One-time codes: TOTP verification (RFC 6238), code format checks, append-mode splitting.

HOTP (RFC 4226 §5.3) is computed here with ``hmac`` directly instead of through pyotp: this is on
every login's path and works on the raw secret bytes the enrolment store already holds, so the
base32 round trip and object construction pyotp needs per call are avoided. The tests check
every result against pyotp and the RFC 6238 Appendix B vectors.

Time comes in as ``now`` (epoch seconds); nothing here reads the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pyotp

from mfa_radius.core.model import TotpToken

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_PACK_COUNTER = struct.Struct(">Q").pack
_UNPACK_U32 = struct.Struct(">I").unpack_from


@dataclass(frozen=True, slots=True)
class CodeMatch:
    """A code that matched a token.

    Attributes:
        token: the token that produced the code.
        timecode: the RFC 6238 time step counter T that matched; with the token id it names
            the replay mark, so a code is accepted once per token and step.
    """

    token: TotpToken
    timecode: int


def hotp(secret: bytes, counter: int, *, digits: int = 6, algorithm: str = "sha1") -> str:
    """Compute an HOTP value (RFC 4226 §5.3, dynamic truncation; RFC 6238 §1.2 digests).

    Args:
        secret: the shared secret K.
        counter: the moving factor C (for TOTP, the time step T).
        digits: output length, 6 to 10.
        algorithm: ``sha1``, ``sha256`` or ``sha512``.

    Returns:
        The zero-padded decimal code.

    Raises:
        ValueError: for an unknown algorithm.
    """
    try:
        digest = _DIGESTS[algorithm]
    except KeyError:
        raise ValueError(f"unknown TOTP algorithm {algorithm!r}") from None
    mac = hmac.new(secret, _PACK_COUNTER(counter), digest).digest()
    offset = mac[-1] & 0x0F
    binary = _UNPACK_U32(mac, offset)[0] & 0x7FFFFFFF
    return str(binary % (10**digits)).zfill(digits)


def timecode(now: float, time_step: int) -> int:
    """Return the RFC 6238 §4.2 time step counter T = floor((now - T0) / X), with T0 = 0."""
    return int(now) // time_step


def is_code_format(code: str, digits: int) -> bool:
    """Say whether ``code`` is exactly ``digits`` ASCII digits (nothing else is ever compared)."""
    return len(code) == digits and code.isascii() and code.isdigit()


def check_totp(
    tokens: Sequence[TotpToken],
    code: str,
    *,
    now: float,
    lookback_steps: int,
    lookforward_steps: int,
) -> CodeMatch | None:
    """Find the token and time step that produce ``code`` within the allowed window.

    RFC 6238 §5.2 lets the verifier accept codes from a few steps back (network delay, a user
    typing slowly) and forward (a token whose clock runs fast). Every candidate is compared
    with ``hmac.compare_digest`` and the loop does not stop early, so the time taken does not
    reveal which candidate matched.

    Args:
        tokens: the user's enrolled TOTP tokens.
        code: what the user typed.
        now: current time, epoch seconds.
        lookback_steps: how many steps before the current one to accept.
        lookforward_steps: how many steps after the current one to accept.

    Returns:
        The first match (current step preferred, then nearer steps), or None.
    """
    match: CodeMatch | None = None
    wanted = code.encode("ascii", errors="replace")
    for token in tokens:
        if not is_code_format(code, token.digits):
            continue
        current = timecode(now, token.time_step)
        for delta in _window(lookback_steps, lookforward_steps):
            counter = current + delta
            candidate = hotp(
                token.secret, counter, digits=token.digits, algorithm=token.algorithm
            ).encode("ascii")
            if hmac.compare_digest(candidate, wanted) and match is None:
                match = CodeMatch(token=token, timecode=counter)
    return match


def _window(lookback: int, lookforward: int) -> list[int]:
    """Offsets to try, nearest first: 0, -1, +1, -2, +2, ..."""
    offsets = [0]
    for i in range(1, max(lookback, lookforward) + 1):
        if i <= lookback:
            offsets.append(-i)
        if i <= lookforward:
            offsets.append(i)
    return offsets


def replay_key(match: CodeMatch) -> str:
    """Name the replay mark of a matched code: one per token and time step, cluster-wide."""
    return f"totp:{match.token.token_id}:{match.timecode}"


def replay_ttl(match: CodeMatch, *, now: float, lookback_steps: int) -> float:
    """How long the replay mark must live: until the matched step can no longer be accepted.

    Step T is accepted while the current step is at most T + lookback_steps, that is until
    (T + lookback_steps + 1) * X. One more step covers clock skew between nodes.

    Args:
        match: the accepted code.
        now: current time, epoch seconds.
        lookback_steps: the configured look-back window.

    Returns:
        Seconds, at least one time step.
    """
    step = match.token.time_step
    until = (match.timecode + lookback_steps + 2) * step
    return max(float(step), until - now)


def split_appended(password: bytes, delimiter: str, digits: int) -> tuple[bytes, str] | None:
    """Split ``password<delimiter>code`` (append mode) at the LAST delimiter.

    Passwords may contain the delimiter; codes never do, so the last occurrence is the split.
    With an empty delimiter the last ``digits`` characters are the code.

    Args:
        password: the revealed User-Password.
        delimiter: the client's delimiter (``","`` by default).
        digits: expected code length when the delimiter is empty.

    Returns:
        ``(password, code)``, or None when no well-formed code is appended.
    """
    if delimiter:
        sep = delimiter.encode()
        head, found, tail = password.rpartition(sep)
        if not found:
            return None
    else:
        if len(password) <= digits:
            return None
        head, tail = password[:-digits], password[-digits:]
    code = tail.decode("ascii", errors="replace")
    if not code.isascii() or not code.isdigit() or not 6 <= len(code) <= 10:
        return None
    return head, code


def provisioning_uri(
    secret: bytes,
    *,
    username: str,
    issuer: str,
    digits: int = 6,
    time_step: int = 30,
    algorithm: str = "sha1",
) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (Google Key Uri Format).

    Args:
        secret: the raw shared secret (encoded base32 in the URI).
        username: the account label.
        issuer: the organisation shown by the app.
        digits: code length.
        time_step: seconds per code.
        algorithm: ``sha1``, ``sha256`` or ``sha512``.

    Returns:
        The URI; it contains the secret, so it is shown to the admin once and never logged.
    """
    totp = pyotp.TOTP(
        base64.b32encode(secret).decode("ascii"),
        digits=digits,
        interval=time_step,
        digest=_DIGESTS[algorithm],
        name=username,
        issuer=issuer,
    )
    return totp.provisioning_uri()
