"""TwilioMessageSender: the real twilio SDK against the local fake of Twilio's REST API.

Everything crosses loopback HTTP: the SDK builds the request, aiohttp sends it, the fake in
``tests/support/twilio_api.py`` records it and answers as Twilio would (201, 400, 401, 429,
503, or never). Calls are checked on the TwiML the Calls API received, parsed back.
"""

from __future__ import annotations

import asyncio
import traceback
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import pytest
import structlog
from structlog.typing import EventDict

from mfa_radius.adapters.twilio.sender import TwilioMessageSender
from mfa_radius.adapters.twilio.twiml import code_twiml
from mfa_radius.errors import DeliveryFailed
from mfa_radius.ports import ApproveCall, CodeCall, CodeText, Message
from tests.support.ports import LOOPBACK, free_tcp_port
from tests.support.twilio_api import FakeTwilioApi, RecordedRequest, Reply

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 30 + "42"
WRONG_TOKEN = "e" * 30 + "17"
PHONE = "+15005550987"
SENDER = "+15005550006"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
CODE = "483920"
BODY = f"Your sign-in code is {CODE}"
ORGANISATION = "Example Corp"
LANGUAGE = "de-DE"
WEBHOOK_URL = "https://mfa.example.org/twilio"
CALL_TOKEN = "Zm9vYmFyYmF6cXV4MTIzNA"
GATHER_SECONDS = 12
TIMEOUT = 0.5

TEXT = CodeText(to=PHONE, body=BODY, sender=SENDER)
VOICE = CodeCall(
    to=PHONE, code=CODE, organisation=ORGANISATION, language=LANGUAGE, caller_id=SENDER
)
APPROVE = ApproveCall(
    to=PHONE,
    token=CALL_TOKEN,
    organisation=ORGANISATION,
    language=LANGUAGE,
    caller_id=SENDER,
    gather_seconds=GATHER_SECONDS,
)


@pytest.fixture
async def api() -> AsyncIterator[FakeTwilioApi]:
    """A running fake of the REST API that knows ACCOUNT_SID and AUTH_TOKEN."""
    async with FakeTwilioApi(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def sender(api: FakeTwilioApi) -> AsyncIterator[TwilioMessageSender]:
    """A sender pointed at the fake, with a webhook URL, closed after the test."""
    client = TwilioMessageSender(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        timeout=TIMEOUT,
        api_base_url=api.base_url,
        webhook_url=WEBHOOK_URL,
    )
    yield client
    await client.close()


async def _failure(sender: TwilioMessageSender, message: Message = TEXT) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await sender.send(message)
    return caught.value


def _assert_no_secret(text: str) -> None:
    assert PHONE not in text
    assert PHONE.lstrip("+") not in text
    assert CODE not in text
    assert CALL_TOKEN not in text
    assert AUTH_TOKEN not in text


def _rendered(exc: BaseException) -> str:
    """The exception as a traceback would print it, causes included."""
    return "".join(traceback.format_exception(exc))


def _rendered_logs(entries: list[EventDict]) -> str:
    return repr(entries)


def _twiml(request: RecordedRequest) -> ET.Element:
    """The TwiML a call request carried, parsed (our own output, not untrusted input)."""
    assert request.twiml is not None
    return ET.fromstring(request.twiml)  # noqa: S314 - our own TwiML, see above


class TestSendText:
    async def test_sends_to_from_and_body_with_basic_auth(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """An SMS is one authorised POST to Messages.json carrying To, From and Body."""
        delivery = await sender.send(TEXT)

        [request] = api.requests
        assert request.resource == "Messages"
        assert request.account_sid == ACCOUNT_SID
        assert request.authorized
        assert (request.to, request.from_, request.body) == (PHONE, SENDER, BODY)
        assert request.messaging_service_sid is None
        assert delivery.provider_id.startswith("SM")

    async def test_uses_messaging_service_when_sender_is_mg_sid(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A sender starting with MG goes out as MessagingServiceSid, without From."""
        await sender.send(CodeText(to=PHONE, body=BODY, sender=SERVICE_SID))

        [request] = api.requests
        assert request.messaging_service_sid == SERVICE_SID
        assert request.from_ is None

    async def test_reuses_one_session_for_several_messages(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """Consecutive messages each get their own SID through the same sender."""
        first = await sender.send(TEXT)
        second = await sender.send(TEXT)

        assert len(api.requests) == 2
        assert first.provider_id != second.provider_id

    async def test_logs_code_sent_with_phone_tail_and_sid_only(
        self, sender: TwilioMessageSender
    ) -> None:
        """code_sent names the last two digits and the Message SID, never number or body."""
        with structlog.testing.capture_logs() as entries:
            delivery = await sender.send(TEXT)

        [entry] = [e for e in entries if e["event"] == "code_sent"]
        assert entry["phone_tail"] == "87"
        assert entry["provider_id"] == delivery.provider_id
        _assert_no_secret(_rendered_logs(entries))


class TestCodeCall:
    async def test_places_call_with_code_twiml_and_caller_id(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A voice code is one POST to Calls.json with To, From (caller id) and its TwiML."""
        delivery = await sender.send(VOICE)

        [request] = api.requests
        assert request.resource == "Calls"
        assert request.authorized
        expected = code_twiml(CODE, organisation=ORGANISATION, language=LANGUAGE)
        assert (request.to, request.from_, request.twiml) == (PHONE, SENDER, expected)
        assert delivery.provider_id.startswith("CA")

    async def test_twiml_reads_the_code_digits_in_the_call_language(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """The call names the organisation and reads the code's digits, all in its language."""
        await sender.send(VOICE)

        says = list(_twiml(api.requests[0]).iter("Say"))
        assert {say.get("language") for say in says} == {LANGUAGE}
        spoken = [say.text or "" for say in says]
        assert ORGANISATION in spoken[0]
        assert spoken.count("4, 8, 3, 9, 2, 0.") == 2

    async def test_logs_call_without_code(self, sender: TwilioMessageSender) -> None:
        """code_sent for a call names the channel and the tail, never the code or number."""
        with structlog.testing.capture_logs() as entries:
            await sender.send(VOICE)

        [entry] = [e for e in entries if e["event"] == "code_sent"]
        assert (entry["channel"], entry["phone_tail"]) == ("call", "87")
        _assert_no_secret(_rendered_logs(entries))

    async def test_call_failure_is_mapped_like_sms(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A refused call raises a permanent DeliveryFailed with Twilio's code."""
        api.reply = Reply.INVALID_NUMBER
        failure = await _failure(sender, VOICE)

        assert failure.permanent
        assert failure.code == 21211
        _assert_no_secret(_rendered(failure))

    async def test_rejects_code_that_is_not_digits(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A code Twilio could not read out is a programming error, raised before any POST."""
        call = CodeCall(
            to=PHONE, code="12a4", organisation=ORGANISATION, language=LANGUAGE, caller_id=SENDER
        )
        with pytest.raises(ValueError, match="digits"):
            await sender.send(call)

        assert api.requests == []


class TestApproveCall:
    async def test_places_call_with_gather_posting_to_the_webhook(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """The approve call's Gather posts one key to {webhook_url}/approve?t={token}."""
        delivery = await sender.send(APPROVE)

        [request] = api.requests
        assert request.resource == "Calls"
        assert (request.to, request.from_) == (PHONE, SENDER)
        gather = _twiml(request).find("Gather")
        assert gather is not None
        assert gather.get("action") == f"{WEBHOOK_URL}/approve?t={CALL_TOKEN}"
        assert (gather.get("method"), gather.get("numDigits")) == ("POST", "1")
        assert gather.get("timeout") == str(GATHER_SECONDS)
        assert delivery.provider_id.startswith("CA")

    async def test_twiml_names_organisation_in_the_call_language(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """The question names the organisation; every spoken part uses the call's language."""
        await sender.send(APPROVE)

        root = _twiml(api.requests[0])
        assert {say.get("language") for say in root.iter("Say")} == {LANGUAGE}
        assert ORGANISATION in (root.findtext("Gather/Say") or "")

    async def test_drops_trailing_slash_of_webhook_url(self, api: FakeTwilioApi) -> None:
        """A webhook URL given with a trailing slash yields the URL the webhook signs."""
        client = TwilioMessageSender(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            timeout=TIMEOUT,
            api_base_url=api.base_url,
            webhook_url=WEBHOOK_URL + "/",
        )
        try:
            await client.send(APPROVE)
        finally:
            await client.close()

        gather = _twiml(api.requests[0]).find("Gather")
        assert gather is not None
        assert gather.get("action") == f"{WEBHOOK_URL}/approve?t={CALL_TOKEN}"

    async def test_fails_clearly_without_webhook_url(self, api: FakeTwilioApi) -> None:
        """Without a webhook URL no call is placed: a non-permanent DeliveryFailed says why."""
        client = TwilioMessageSender(
            account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base_url=api.base_url
        )
        try:
            with structlog.testing.capture_logs() as entries:
                failure = await _failure(client, APPROVE)
            text_still_goes_out = await client.send(TEXT)
        finally:
            await client.close()

        assert failure.backend == "twilio"
        assert "webhook_url" in failure.detail
        assert not failure.permanent
        assert [r.resource for r in api.requests] == ["Messages"]
        assert text_still_goes_out.provider_id.startswith("SM")
        [entry] = [e for e in entries if e["event"] == "delivery_failed"]
        assert (entry["log_level"], entry["error"]) == ("error", "no_webhook_url")
        _assert_no_secret(_rendered(failure) + _rendered_logs(entries))

    async def test_failures_never_show_token(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A refused approve call shows neither the call token nor the number."""
        api.reply = Reply.INVALID_NUMBER
        with structlog.testing.capture_logs() as entries:
            failure = await _failure(sender, APPROVE)

        assert failure.permanent
        _assert_no_secret(_rendered(failure) + _rendered_logs(entries))


class TestErrors:
    async def test_invalid_number_is_permanent_with_twilio_code(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A 400 answer means the number is refused: permanent, code 21211."""
        api.reply = Reply.INVALID_NUMBER
        failure = await _failure(sender)

        assert failure.permanent
        assert failure.code == 21211
        assert failure.backend == "twilio"

    @pytest.mark.parametrize(
        ("reply", "code"),
        [(Reply.RATE_LIMITED, 20429), (Reply.UNAVAILABLE, 20503)],
        ids=["429", "503"],
    )
    async def test_rate_limit_and_outage_are_transient(
        self, api: FakeTwilioApi, sender: TwilioMessageSender, reply: Reply, code: int
    ) -> None:
        """429 and 5xx are outages: not permanent, so the fail mode decides."""
        api.reply = reply
        failure = await _failure(sender)

        assert not failure.permanent
        assert failure.code == code

    @pytest.mark.parametrize("message", [TEXT, VOICE, APPROVE], ids=["text", "voice", "approve"])
    async def test_unavailable_is_posted_exactly_once(
        self, api: FakeTwilioApi, sender: TwilioMessageSender, message: Message
    ) -> None:
        """A 503 is not retried: the message or call may have gone out, so one POST only."""
        api.reply = Reply.UNAVAILABLE
        await _failure(sender, message)  # a retrying client would POST again before raising

        assert len(api.requests) == 1

    async def test_hanging_api_fails_within_timeout(
        self, api: FakeTwilioApi, sender: TwilioMessageSender
    ) -> None:
        """A server that never answers gives a transient DeliveryFailed after the timeout."""
        api.reply = Reply.HANG
        async with asyncio.timeout(TIMEOUT + 5.0):  # a hang guard, not a speed check
            failure = await _failure(sender)

        assert not failure.permanent
        assert failure.code is None
        assert failure.detail == f"no answer within {TIMEOUT:g} s"  # its own timeout ended it
        assert failure.maybe_sent  # the request reached Twilio: it may have gone out
        assert len(api.requests) == 1

    async def test_wrong_auth_token_is_a_config_fault_not_permanent(
        self, api: FakeTwilioApi
    ) -> None:
        """A 401 is the proxy's fault, not the number's: not permanent, logged at error."""
        client = TwilioMessageSender(
            account_sid=ACCOUNT_SID, auth_token=WRONG_TOKEN, api_base_url=api.base_url
        )
        try:
            with (
                structlog.testing.capture_logs() as entries,
                pytest.raises(DeliveryFailed) as caught,
            ):
                await client.send(TEXT)
        finally:
            await client.close()

        assert not caught.value.permanent
        assert caught.value.code == 20003
        assert not api.requests[0].authorized
        [entry] = [e for e in entries if e["event"] == "delivery_failed"]
        assert entry["log_level"] == "error"
        assert WRONG_TOKEN not in _rendered(caught.value) + _rendered_logs(entries)

    async def test_closed_port_is_transient(self) -> None:
        """Nothing listening gives a transient DeliveryFailed, not an aiohttp error."""
        client = TwilioMessageSender(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            timeout=TIMEOUT,
            api_base_url=f"http://{LOOPBACK}:{free_tcp_port()}",
        )
        try:
            failure = await _failure(client)
        finally:
            await client.close()

        assert not failure.permanent
        _assert_no_secret(_rendered(failure))

    @pytest.mark.parametrize(
        "reply",
        [Reply.INVALID_NUMBER, Reply.RATE_LIMITED, Reply.UNAVAILABLE, Reply.HANG],
        ids=["400", "429", "503", "hang"],
    )
    async def test_failures_never_show_number_code_or_token(
        self, api: FakeTwilioApi, sender: TwilioMessageSender, reply: Reply
    ) -> None:
        """Neither the exception (with its causes) nor the logs hold number, code or token."""
        api.reply = reply
        with structlog.testing.capture_logs() as entries:
            failure = await _failure(sender)

        _assert_no_secret(_rendered(failure))
        _assert_no_secret(_rendered_logs(entries))
        [entry] = [e for e in entries if e["event"] == "delivery_failed"]
        assert entry["phone_tail"] == "87"


class TestLifecycle:
    def test_repr_hides_auth_token(self) -> None:
        """The auth token is not part of the sender's repr."""
        client = TwilioMessageSender(
            account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, webhook_url=WEBHOOK_URL
        )

        assert AUTH_TOKEN not in repr(client)

    async def test_close_is_idempotent_and_safe_before_use(self) -> None:
        """close() works on a sender that never sent and when called twice."""
        client = TwilioMessageSender(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
        await client.close()
        await client.close()

    def test_rejects_non_positive_timeout(self) -> None:
        """A zero timeout is a programming error, caught at construction."""
        with pytest.raises(ValueError, match="timeout"):
            TwilioMessageSender(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, timeout=0)
