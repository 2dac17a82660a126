"""Phone numbers on the login path: which number a user has, in E.164 form, and where it is.

The enrolment database's number wins over the directory's (the NPS extension for Entra MFA
reads the directory at login time; so can we). Numbers are parsed with ``phonenumbers`` so that
a number stored without a country code still reaches the right country, and an invalid one is
treated as no number at all rather than sent to.
"""

from __future__ import annotations

import phonenumbers

from mfa_radius.core.model import Identity, User


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


def mask_number(e164: str) -> str:
    """A number as shown in a prompt: only the last two digits."""
    return "*" * max(len(e164) - 3, 0) + e164[-2:] if e164 else ""
