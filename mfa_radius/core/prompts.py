"""Reply-Message texts for challenges, kept within one RADIUS attribute.

RFC 2865 §5: an attribute value holds at most 253 octets. Gateways show one Reply-Message as
the prompt, so a prompt is rendered and cut to fit one attribute, on a UTF-8 character
boundary so that the NAS never receives a broken character.
"""

from __future__ import annotations

MAX_ATTRIBUTE_OCTETS = 253

DEFAULT_PROMPT = "Enter the {digits}-digit code from your authenticator app"
"""The Access-Challenge prompt unless configured otherwise."""

DEFAULT_SMS_PROMPT = "Enter the {digits}-digit code sent by text message to {phone}"
"""The prompt after a code was texted."""

DEFAULT_VOICE_PROMPT = "Enter the {digits}-digit code from the call to {phone}"
"""The prompt after a call read the code."""

DEFAULT_RETRY_PROMPT = "Wrong code, {attempts_left} attempt(s) left. Enter the {digits}-digit code"
"""The prompt after a wrong code unless configured otherwise."""


def fit_octets(text: str, limit: int = MAX_ATTRIBUTE_OCTETS) -> bytes:
    """Encode ``text`` as UTF-8 and cut it to ``limit`` octets without splitting a character.

    Args:
        text: the message.
        limit: the octet budget.

    Returns:
        The encoded, possibly shortened text.
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    cut = data[:limit]
    return cut.decode("utf-8", errors="ignore").encode("utf-8")


def render(
    template: str,
    *,
    digits: int,
    attempts_left: int | None = None,
    phone: str = "",
    suffix: str = "",
) -> str:
    """Fill a prompt template and fit it into one Reply-Message.

    Known placeholders: ``{digits}`` (code length), ``{attempts_left}`` and ``{phone}``.
    Unknown placeholders are left as written (the config check rejects them at start-up).

    Args:
        template: the configured prompt.
        digits: the expected code length.
        attempts_left: how many codes may still be tried, when known.
        phone: the masked number a code went to (``{phone}``).
        suffix: text appended (the menu of other factors).

    Returns:
        The Reply-Message text; its UTF-8 encoding is at most 253 octets.
    """
    text = template.replace("{digits}", str(digits)).replace("{phone}", phone)
    if attempts_left is not None:
        text = text.replace("{attempts_left}", str(attempts_left))
    return fit_octets(text + suffix).decode("utf-8")


PLACEHOLDERS = ("{digits}", "{attempts_left}", "{phone}")
"""Placeholders a prompt template may use."""
