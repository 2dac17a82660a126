"""Messages the proxy asks a provider to deliver: domain values, no provider markup.

The login engine builds these; the ``MessageSender`` port (``ports.py``) carries them to an
adapter, which alone knows the provider's format (TwiML for Twilio calls, plain lines for the
lab file sender). Codes and tokens are hidden from ``repr`` so they never reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CodeText:
    """A text message carrying a one-time code.

    Attributes:
        to: E.164 destination.
        body: the text, rendered from the profile's template (contains the code: never
            logged).
        sender: an E.164 number or a Messaging Service SID (``MG...``).
    """

    to: str
    body: str = field(repr=False)
    sender: str


@dataclass(frozen=True, slots=True)
class CodeCall:
    """A call that reads a one-time code out.

    Attributes:
        to: E.164 destination.
        code: the digits to read (never logged).
        organisation: named in the call.
        language: the spoken language (``en-US``, ``de-DE``).
        caller_id: the E.164 number shown to the callee (carriers may drop it).
    """

    to: str
    code: str = field(repr=False)
    organisation: str
    language: str
    caller_id: str


@dataclass(frozen=True, slots=True)
class ApproveCall:
    """A call that asks the user to press 1 to approve a sign-in (9 reports fraud).

    The keypress comes back through the webhook, which publishes it on the
    :class:`ResultBus` under ``token``.

    Attributes:
        to: E.164 destination.
        token: the call's random token (the webhook's key; never logged).
        organisation: named in the call.
        language: the spoken language.
        caller_id: the E.164 number shown to the callee.
        gather_seconds: how long the call waits for a key.
    """

    to: str
    token: str = field(repr=False)
    organisation: str
    language: str
    caller_id: str
    gather_seconds: int


Message = CodeText | CodeCall | ApproveCall
"""What the proxy asks a provider to deliver: domain values, no provider markup."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message or call the provider accepted.

    Attributes:
        provider_id: the provider's id for it (Twilio's Message or Call SID), for the audit.
    """

    provider_id: str
