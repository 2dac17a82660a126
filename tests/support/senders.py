"""A message sender that records what it would send (implements mfa_radius.ports.MessageSender).

It stands in for the SMS/voice provider above the Twilio adapter (which has its own tests
against a local HTTP fake of Twilio's API): the service tests read the codes and approve
tokens from the domain values it recorded, with no TwiML involved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mfa_radius.errors import DeliveryFailed
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, Delivery, Message


@dataclass
class RecordingMessageSender:
    """Records messages in order; ``fail`` makes the next sends fail.

    ``fail`` is ``""`` (deliver), ``"permanent"`` (the number is refused, Twilio error 21211)
    or ``"outage"`` (the provider is unavailable). A failed send records nothing.
    """

    messages: list[Message] = field(default_factory=list)
    fail: str = ""

    async def send(self, message: Message) -> Delivery:
        """Record a text message or call; SIDs count ``SM<n>`` for texts, ``CA<n>`` for calls."""
        if self.fail == "permanent":
            raise DeliveryFailed("recording", "refused", permanent=True, code=21211)
        if self.fail == "outage":
            raise DeliveryFailed("recording", "unavailable")
        self.messages.append(message)
        prefix = "SM" if isinstance(message, CodeText) else "CA"
        return Delivery(f"{prefix}{len(self.messages)}")

    async def close(self) -> None:
        """Nothing to release."""

    def last_code(self, digits: int = 6) -> str:
        """The code in the last message: found in a text's body, or a voice call's code."""
        assert self.messages, "nothing was sent"
        message = self.messages[-1]
        if isinstance(message, CodeCall):
            return message.code
        assert isinstance(message, CodeText), f"the last message is a {type(message).__name__}"
        found = re.search(rf"\b\d{{{digits}}}\b", message.body)
        assert found is not None, "no code in the message"
        return found.group(0)

    def approve_token(self) -> str:
        """The webhook token of the last message, which must be an approve call."""
        assert self.messages, "nothing was sent"
        message = self.messages[-1]
        assert isinstance(message, ApproveCall), f"the last message is a {type(message).__name__}"
        return message.token
