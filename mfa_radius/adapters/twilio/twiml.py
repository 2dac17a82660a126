"""TwiML documents for the proxy's calls and for the webhook's answer to Twilio.

Pure functions of the standard library (no SDK, no I/O): ``sender.py`` builds a call's
document from a :class:`~mfa_radius.core.messages.CodeCall` or
:class:`~mfa_radius.core.messages.ApproveCall`, and the webhook listener (``webhook.py``) uses
:func:`approve_action_url` and :func:`reply_twiml`, so both agree on the URL Twilio is given
(and signs). The words of a call are kept apart from the markup (:func:`code_speech`,
:func:`approve_speech`) so that the lab's file sender writes exactly what a real call says
without parsing TwiML.

Values are escaped by ElementTree, never pasted into markup: an organisation name or URL with
``&`` or ``<`` cannot change the document's structure. What a pressed key means is not decided
here but in :mod:`mfa_radius.core.call_result`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Final

from mfa_radius.core.call_result import CallResult

_CODE_RE: Final = re.compile(r"[0-9]{1,16}")

_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'


def approve_action_url(public_url: str, token: str) -> str:
    """The URL of an approve call's ``<Gather action>``; Twilio signs exactly this URL.

    Args:
        public_url: the webhook's public base URL, without a trailing slash.
        token: the call's random token.

    Returns:
        ``{public_url}/approve?t={token}``.
    """
    return f"{public_url}/approve?t={token}"


def code_speech(code: str, *, organisation: str) -> tuple[str, str, str, str, str]:
    """The sentences a voice-code call speaks, in order.

    Digits are separated by commas so text-to-speech reads "1, 2, 3" rather than "one
    hundred twenty-three"; the code is read twice because a callee often misses the first
    reading while reaching for a pen.

    Args:
        code: the one-time code, digits only (never logged).
        organisation: the name read to the callee, so they know who calls.

    Returns:
        The introduction, the code, "Again:", the code, the goodbye.

    Raises:
        ValueError: ``code`` is not 1 to 16 ASCII digits.
    """
    if _CODE_RE.fullmatch(code) is None:
        raise ValueError("code must be 1 to 16 ASCII digits")
    spoken = ", ".join(code) + "."
    return (
        f"This is {organisation}. Your sign-in code is:",
        spoken,
        "Again:",
        spoken,
        "Goodbye.",
    )


def approve_speech(*, organisation: str) -> tuple[str, str]:
    """The sentences an approve call speaks, in order.

    Args:
        organisation: the name read to the callee, so they know who calls.

    Returns:
        The question (asked while Twilio waits for a key) and the goodbye when no key came.
    """
    return (
        f"This is {organisation}. Press 1 to approve the sign-in. "
        "Press 9 to report that you did not try to sign in.",
        "No key pressed. Goodbye.",
    )


def _render(response: ET.Element) -> str:
    """Serialise a TwiML tree; ElementTree escapes text and attribute values."""
    return _XML_DECLARATION + ET.tostring(response, encoding="unicode")


def _say(parent: ET.Element, text: str, language: str) -> None:
    """Append ``<Say language=...>text</Say>``."""
    say = ET.SubElement(parent, "Say", {"language": language})
    say.text = text


def _pause(parent: ET.Element) -> None:
    """Append a one-second ``<Pause>``."""
    ET.SubElement(parent, "Pause", {"length": "1"})


def approve_twiml(*, action_url: str, organisation: str, language: str, timeout_s: int) -> str:
    """Build the TwiML of an approve call: one keypress, posted to ``action_url``.

    Args:
        action_url: where Twilio posts the key (:func:`approve_action_url`); it is also the
            URL Twilio signs, so it must be passed unchanged.
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
    question, goodbye = approve_speech(organisation=organisation)
    response = ET.Element("Response")
    gather = ET.SubElement(
        response,
        "Gather",
        {"numDigits": "1", "action": action_url, "method": "POST", "timeout": str(timeout_s)},
    )
    _say(gather, question, language)
    _say(response, goodbye, language)
    return _render(response)


def code_twiml(code: str, *, organisation: str, language: str) -> str:
    """Build the TwiML of a voice code: the digits one by one, read twice with pauses.

    Args:
        code: the one-time code, digits only (never logged).
        organisation: the name read to the callee.
        language: the ``<Say>`` language.

    Returns:
        The TwiML document.

    Raises:
        ValueError: ``code`` is not 1 to 16 ASCII digits.
    """
    intro, first, again, second, goodbye = code_speech(code, organisation=organisation)
    response = ET.Element("Response")
    _say(response, intro, language)
    _pause(response)
    _say(response, first, language)
    _pause(response)
    _say(response, again, language)
    _say(response, second, language)
    _pause(response)
    _say(response, goodbye, language)
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
