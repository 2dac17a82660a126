"""What a key pressed on an approve call means for the sign-in.

Pure values: the webhook listener (``webhook.py``) turns Twilio's ``Digits`` field into a
:class:`CallResult` and publishes its value; the login engine reads that value back. Both import
it from here so that they agree on the strings that cross the result bus. How the question is
asked (TwiML) is the Twilio adapter's business (``adapters/twilio/twiml.py``), not this module's.
"""

from __future__ import annotations

import enum


class CallResult(enum.StrEnum):
    """What the callee answered on an approve call (the value passed to publish_result)."""

    #: Pressed 1: the user approves the sign-in.
    APPROVE = "approve"
    #: Pressed 9: the user did not try to sign in; the attempt is reported.
    FRAUD = "fraud"
    #: Pressed another key, or Twilio sent no digits: the sign-in is refused.
    DENY = "deny"


def result_for_digits(digits: str | None) -> CallResult:
    """Map Twilio's ``Digits`` field to a result; anything but 1 or 9 denies.

    Denying by default means a stray key, a keypad tone the network garbled or an empty
    callback can never approve a sign-in.

    Args:
        digits: the ``Digits`` form field, or None when absent.

    Returns:
        The result to publish.
    """
    if digits == "1":
        return CallResult.APPROVE
    if digits == "9":
        return CallResult.FRAUD
    return CallResult.DENY
