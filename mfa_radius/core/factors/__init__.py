"""Second factors as plug-ins, and which of them a user can use at a client.

``REGISTRY`` maps each :class:`~mfa_radius.core.model.Factor` to its plug-in (see
``factors.base.FactorPlugin``). The profile lists the factors it allows in order of
preference; the first one the user has is used, and the prompt can offer the others. Adding a
factor is one module and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mfa_radius.core.factors.approve import Approve
from mfa_radius.core.factors.base import FactorPlugin
from mfa_radius.core.factors.sent_code import SentCode, code_hash, sent_code_matches, sms_text
from mfa_radius.core.factors.totp import Totp
from mfa_radius.core.factors.upstream import UpstreamRelay
from mfa_radius.core.menu import MENU_CHOICES, menu_suffix, parse_choice
from mfa_radius.core.model import Factor, User
from mfa_radius.core.phones import normalise_phone, phone_of, region_of

__all__ = [
    "MENU_CHOICES",
    "REGISTRY",
    "available",
    "code_hash",
    "menu_suffix",
    "normalise_phone",
    "parse_choice",
    "phone_of",
    "region_of",
    "sent_code_matches",
    "sms_text",
]

REGISTRY: Mapping[Factor, FactorPlugin] = {
    Factor.SMS: SentCode(Factor.SMS),
    Factor.VOICE: SentCode(Factor.VOICE),
    Factor.TOTP: Totp(),
    Factor.APPROVE: Approve(),
    Factor.UPSTREAM: UpstreamRelay(),
}
"""Every factor's plug-in. Answers at a prompt are checked in this order: a sent code first,
then TOTP (so a user who got a text can still type their app's code)."""


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
    return tuple(f for f in allowed if REGISTRY[f].usable(user, phone_ok))
