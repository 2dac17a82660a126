"""Choosing a second factor, and checking codes that were sent by text message or call.

A user may have an authenticator app, a phone, or both. The profile lists the factors it
allows in order of preference; the first one the user has is used, and the prompt can offer
the others ("type 1 for a text message, 2 for a call"), so that a user who did not get the
text can ask for a call at the same prompt.

A code that was sent is never stored: the challenge record keeps an HMAC of it, keyed with a
secret every node shares and bound to the challenge's State, so neither a copy of the store nor
a record moved to another challenge reveals or reuses it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import phonenumbers

from mfa_radius.core.model import Factor, Identity, User

MENU_CHOICES: dict[str, Factor] = {
    "1": Factor.SMS,
    "sms": Factor.SMS,
    "text": Factor.SMS,
    "2": Factor.VOICE,
    "call": Factor.VOICE,
    "voice": Factor.VOICE,
}
"""What a user may type at the prompt to ask for another factor."""

_MENU_LINES = {Factor.SMS: "1 for a text message", Factor.VOICE: "2 for a call"}


def phone_of(user: User | None, identity: Identity | None) -> str:
    """The number to send codes to: the enrolment database's, else the directory's first."""
    if user is not None and user.phone:
        return user.phone
    if identity is not None and identity.phones:
        return identity.phones[0]
    return ""


def normalise_phone(number: str, *, default_region: str | None) -> str | None:
    """Return ``number`` in E.164 form, or None when it is not a valid number.

    Args:
        number: as stored (``+49 151 ...``, ``(0151) ...`` with a default region).
        default_region: ISO 3166 region for numbers without a country code.
    """
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def region_of(e164: str) -> str:
    """The ISO 3166 region of an E.164 number (``"ZZ"`` when unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or "ZZ"
    except phonenumbers.NumberParseException:
        return "ZZ"


def available(
    user: User,
    phone: str | None,
    allowed: Sequence[Factor],
    *,
    allowed_regions: frozenset[str] = frozenset(),
) -> tuple[Factor, ...]:
    """The factors this user can use at this client, in the profile's order.

    Args:
        user: the enrolled user.
        phone: the user's E.164 number, or None when they have none (or an invalid one).
        allowed: the profile's factors, in preference order.
        allowed_regions: regions phone factors may go to; empty allows every region
            (toll-fraud control).

    Returns:
        The usable factors, possibly empty.
    """
    phone_ok = phone is not None and (not allowed_regions or region_of(phone) in allowed_regions)
    usable: list[Factor] = []
    for factor in allowed:
        if (factor is Factor.TOTP and user.tokens) or (
            factor in (Factor.SMS, Factor.VOICE, Factor.APPROVE) and phone_ok
        ):
            usable.append(factor)
    return tuple(usable)


def parse_choice(answer: str) -> Factor | None:
    """The factor a user asked for at the prompt, or None when the answer is a code."""
    return MENU_CHOICES.get(answer.strip().casefold())


def menu_suffix(usable: Sequence[Factor], current: Factor) -> str:
    """The prompt's tail offering the other phone factors (empty when there are none)."""
    others = [_MENU_LINES[f] for f in usable if f in _MENU_LINES and f is not current]
    return f" (or type {' or '.join(others)})" if others else ""


def code_hash(key: bytes, state: bytes, code: str) -> str:
    """HMAC-SHA256 of a sent code, bound to the challenge's State (hex).

    Args:
        key: the cluster's code-hashing key (derived from the encryption key file).
        state: the State of the challenge the code belongs to.
        code: the digits that were sent.
    """
    return hmac.new(key, state + b"\x00" + code.encode("ascii"), hashlib.sha256).hexdigest()


def sent_code_matches(key: bytes, state: bytes, expected_hash: str, answer: str) -> bool:
    """Compare an answer with the hash of the code that was sent, in constant time."""
    if not expected_hash or not answer.isascii() or not answer.isdigit():
        return False
    return hmac.compare_digest(code_hash(key, state, answer), expected_hash)


def sms_text(template: str, *, code: str, minutes: int, organisation: str) -> str:
    """The text message, from the profile's template.

    Placeholders: ``{code}``, ``{minutes}``, ``{organisation}``.
    """
    return (
        template.replace("{code}", code)
        .replace("{minutes}", str(minutes))
        .replace("{organisation}", organisation)
    )
