"""The MessageSender contract (ports.MessageSender), run against every sender adapter.

Each test runs on FileMessageSender (a file in the test's directory) and on TwilioMessageSender
(the real twilio SDK against the local fake of Twilio's REST API, tests/support/twilio_api.py).
What differs between them (the file's lines, the requests Twilio receives, failures) is tested
in test_file_sender.py and test_twilio_sender.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mfa_radius.adapters.file_sender import FileMessageSender
from mfa_radius.adapters.twilio.sender import TwilioMessageSender
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, Message, MessageSender
from tests.support.twilio_api import FakeTwilioApi

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 30 + "42"
PHONE = "+15005550987"
SENDER = "+15005550006"
CODE = "48392017"
"""Eight digits, so that a random provider id (hex) cannot contain it by chance."""
CALL_TOKEN = "Zm9vYmFyYmF6cXV4MTIzNA"
WEBHOOK_URL = "https://mfa.example.org/twilio"

SECRETS = (CODE, CALL_TOKEN, AUTH_TOKEN)
"""Never shown in a Delivery or a sender's repr: the code, the call token, the auth token."""

TEXT = CodeText(to=PHONE, body=f"Your sign-in code is {CODE}", sender=SENDER)
VOICE = CodeCall(
    to=PHONE, code=CODE, organisation="Example Corp", language="en-US", caller_id=SENDER
)
APPROVE = ApproveCall(
    to=PHONE,
    token=CALL_TOKEN,
    organisation="Example Corp",
    language="en-US",
    caller_id=SENDER,
    gather_seconds=12,
)
MESSAGES = pytest.mark.parametrize(
    "message", [TEXT, VOICE, APPROVE], ids=["text", "code-call", "approve-call"]
)
"""Run a test with each kind of message."""


@pytest.fixture(params=["file", "twilio"])
async def sender(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageSender]:
    """A sender of each adapter, ready to deliver every kind of message; closed after."""
    if request.param == "file":
        phone = FileMessageSender(tmp_path / "phone.txt")
        yield phone
        await phone.close()
        return
    async with FakeTwilioApi(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as api:
        twilio = TwilioMessageSender(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            timeout=2.0,
            api_base_url=api.base_url,
            webhook_url=WEBHOOK_URL,
        )
        yield twilio
        await twilio.close()


class TestSend:
    @MESSAGES
    async def test_send_returns_delivery_with_provider_id(
        self, sender: MessageSender, message: Message
    ) -> None:
        """Every kind of message is accepted and answered with a non-empty provider id."""
        delivery = await sender.send(message)
        assert isinstance(delivery.provider_id, str)
        assert delivery.provider_id

    @MESSAGES
    async def test_delivery_hides_code_and_token(
        self, sender: MessageSender, message: Message
    ) -> None:
        """Neither the code, the call token nor the auth token shows in the Delivery."""
        delivery = await sender.send(message)
        rendered = repr(delivery) + str(delivery) + delivery.provider_id
        assert [secret for secret in SECRETS if secret in rendered] == []

    @MESSAGES
    async def test_repr_hides_code_and_token_when_sent(
        self, sender: MessageSender, message: Message
    ) -> None:
        """After a send, the sender's repr shows neither the code nor any token."""
        await sender.send(message)
        assert [secret for secret in SECRETS if secret in repr(sender)] == []


class TestClose:
    async def test_close_is_idempotent(self, sender: MessageSender) -> None:
        """Closing a sender that has sent twice in a row succeeds both times."""
        await sender.send(TEXT)
        await sender.close()
        await sender.close()

    async def test_close_is_idempotent_when_never_used(self, sender: MessageSender) -> None:
        """A sender that never sent can be closed twice."""
        await sender.close()
        await sender.close()
