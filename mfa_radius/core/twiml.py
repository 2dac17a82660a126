"""TwiML documents for calls, and the meaning of keys pressed on an approve call.

Pure functions: the phone factors (``dispatch.py``) build calls with them and the webhook
listener (``webhook.py``) reads answers with them, so both agree on the URL Twilio is given
(and signs) and on what each key means.
"""

from __future__ import annotations

import enum
import re
import xml.etree.ElementTree as ET
from typing import Final

_CODE_RE: Final = re.compile(r"[0-9]{1,16}")

_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'


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


def approve_action_url(public_url: str, token: str) -> str:
    """The URL of an approve call's ``<Gather action>``; Twilio signs exactly this URL.

    Args:
        public_url: the webhook's public base URL, without a trailing slash.
        token: the call's random token.

    Returns:
        ``{public_url}/approve?t={token}``.
    """
    return f"{public_url}/approve?t={token}"


def _render(response: ET.Element) -> str:
    """Serialise a TwiML tree; ElementTree escapes text and attribute values."""
    return _XML_DECLARATION + ET.tostring(response, encoding="unicode")


def _say(parent: ET.Element, text: str, language: str) -> None:
    """Append ``<Say language=...>text</Say>``."""
    say = ET.SubElement(parent, "Say", {"language": language})
    say.text = text


def approve_twiml(*, action_url: str, organisation: str, language: str, timeout_s: int) -> str:
    """Build the TwiML of an approve call: one keypress, posted to ``action_url``.

    Args:
        action_url: where Twilio posts the key (``WebhookServer.action_url(token)``); it is
            also the URL Twilio signs, so it must be passed unchanged.
        organisation: the name read to the callee, so they know who calls.
        language: the ``<Say>`` language (``en-GB``, ``de-DE``, ...).
        timeout_s: seconds Twilio waits for a key before the goodbye.

    Returns:
        The TwiML document.

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """
    if timeout_s < 1:
        raise ValueError("timeout_s must be at least 1")
    response = ET.Element("Response")
    gather = ET.SubElement(
        response,
        "Gather",
        {"numDigits": "1", "action": action_url, "method": "POST", "timeout": str(timeout_s)},
    )
    _say(
        gather,
        f"This is {organisation}. Press 1 to approve the sign-in. "
        "Press 9 to report that you did not try to sign in.",
        language,
    )
    _say(response, "No key pressed. Goodbye.", language)
    return _render(response)


def code_twiml(code: str, *, organisation: str, language: str) -> str:
    """Build the TwiML of a voice code: the digits one by one, read twice with pauses.

    Digits are separated by commas so text-to-speech reads "1, 2, 3" rather than "one
    hundred twenty-three".

    Args:
        code: the one-time code, digits only (never logged).
        organisation: the name read to the callee.
        language: the ``<Say>`` language.

    Returns:
        The TwiML document.

    Raises:
        ValueError: ``code`` is not 1 to 16 ASCII digits.
    """
    if _CODE_RE.fullmatch(code) is None:
        raise ValueError("code must be 1 to 16 ASCII digits")
    spoken = ", ".join(code) + "."
    response = ET.Element("Response")
    _say(response, f"This is {organisation}. Your sign-in code is:", language)
    ET.SubElement(response, "Pause", {"length": "1"})
    _say(response, spoken, language)
    ET.SubElement(response, "Pause", {"length": "1"})
    _say(response, "Again:", language)
    _say(response, spoken, language)
    ET.SubElement(response, "Pause", {"length": "1"})
    _say(response, "Goodbye.", language)
    return _render(response)


def reply_twiml(result: CallResult) -> str:
    """The TwiML played after a key was pressed.

    Args:
        result: what the key meant.

    Returns:
        The TwiML document.
    """
    response = ET.Element("Response")
    say = ET.SubElement(response, "Say")
    say.text = (
        "Thank you. The sign-in attempt has been reported. Goodbye."
        if result is CallResult.FRAUD
        else "Thank you. You may hang up."
    )
    return _render(response)
