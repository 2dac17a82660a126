"""A code sender that records what it would send (implements mfa_radius.ports.CodeSender).

It stands in for the SMS/voice provider above the Twilio adapter (which has its own tests
against a local HTTP fake of Twilio's API): the service tests read the codes from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mfa_radius.errors import DeliveryFailed
from mfa_radius.ports import Delivery


@dataclass(frozen=True, slots=True)
class Sent:
    """One recorded message or call."""

    kind: str
    to: str
    text: str
    sender: str


@dataclass
class RecordingCodeSender:
    """Records messages; ``fail`` makes the next sends fail (``"permanent"`` or ``"outage"``)."""

    sent: list[Sent] = field(default_factory=list)
    fail: str = ""

    def _check(self) -> None:
        if self.fail == "permanent":
            raise DeliveryFailed("recording", "refused", permanent=True, code=21211)
        if self.fail == "outage":
            raise DeliveryFailed("recording", "unavailable")

    async def send_sms(self, to: str, body: str, *, sender: str) -> Delivery:
        """Record a text message."""
        self._check()
        self.sent.append(Sent("sms", to, body, sender))
        return Delivery(f"SM{len(self.sent)}")

    async def call(self, to: str, twiml: str, *, caller_id: str) -> Delivery:
        """Record a call."""
        self._check()
        self.sent.append(Sent("call", to, twiml, caller_id))
        return Delivery(f"CA{len(self.sent)}")

    async def close(self) -> None:
        """Nothing to release."""

    def last_code(self, digits: int = 6) -> str:
        """The code in the last message (for calls, the digits read out, once)."""
        text = self.sent[-1].text
        if self.sent[-1].kind == "sms":
            found = re.search(rf"\b\d{{{digits}}}\b", text)
            assert found is not None, "no code in the message"
            return found.group(0)
        spoken = re.findall(r"\d", re.sub(r"<[^>]+>", " ", text))
        return "".join(spoken[:digits])

    def approve_token(self) -> str:
        """The webhook token in the last approve call's TwiML."""
        found = re.search(r"approve\?t=([A-Za-z0-9_-]+)", self.sent[-1].text)
        assert found is not None, "no approve action URL in the call"
        return found.group(1)
