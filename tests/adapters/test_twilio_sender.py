"""TwilioCodeSender: the real twilio SDK against the local fake of Twilio's REST API.

Everything crosses loopback HTTP: the SDK builds the request, aiohttp sends it, the fake in
``tests/support/twilio_api.py`` records it and answers as Twilio would (201, 400, 401, 429,
503, or never).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import AsyncIterator

import pytest
import structlog
from structlog.typing import EventDict

from mfa_radius.adapters.twilio_sender import TwilioCodeSender
from mfa_radius.errors import DeliveryFailed
from tests.support.ports import LOOPBACK, free_tcp_port
from tests.support.twilio_api import FakeTwilioApi, Reply

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 30 + "42"
WRONG_TOKEN = "e" * 30 + "17"
PHONE = "+15005550987"
SENDER = "+15005550006"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
CODE = "483920"
BODY = f"Your sign-in code is {CODE}"
TWIML = f"<Response><Say>Your code is {' '.join(CODE)}.</Say></Response>"
TIMEOUT = 0.5


@pytest.fixture
async def api() -> AsyncIterator[FakeTwilioApi]:
    """A running fake of the REST API that knows ACCOUNT_SID and AUTH_TOKEN."""
    async with FakeTwilioApi(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def sender(api: FakeTwilioApi) -> AsyncIterator[TwilioCodeSender]:
    """A sender pointed at the fake, closed after the test."""
    client = TwilioCodeSender(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, timeout=TIMEOUT, api_base_url=api.base_url
    )
    yield client
    await client.close()


async def _failure(sender: TwilioCodeSender) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await sender.send_sms(PHONE, BODY, sender=SENDER)
    return caught.value


def _assert_no_secret(text: str) -> None:
    assert PHONE not in text
    assert PHONE.lstrip("+") not in text
    assert CODE not in text
    assert AUTH_TOKEN not in text


def _rendered(exc: BaseException) -> str:
    """The exception as a traceback would print it, causes included."""
    return "".join(traceback.format_exception(exc))


def _rendered_logs(entries: list[EventDict]) -> str:
    return repr(entries)


class TestSendSms:
    async def test_sends_to_from_and_body_with_basic_auth(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """An SMS is one authorised POST to Messages.json carrying To, From and Body."""
        delivery = await sender.send_sms(PHONE, BODY, sender=SENDER)

        [request] = api.requests
        assert request.resource == "Messages"
        assert request.account_sid == ACCOUNT_SID
        assert request.authorized
        assert (request.to, request.from_, request.body) == (PHONE, SENDER, BODY)
        assert request.messaging_service_sid is None
        assert delivery.provider_id.startswith("SM")

    async def test_uses_messaging_service_when_sender_is_mg_sid(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """A sender starting with MG goes out as MessagingServiceSid, without From."""
        await sender.send_sms(PHONE, BODY, sender=SERVICE_SID)

        [request] = api.requests
        assert request.messaging_service_sid == SERVICE_SID
        assert request.from_ is None

    async def test_reuses_one_session_for_several_messages(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """Consecutive messages each get their own SID through the same sender."""
        first = await sender.send_sms(PHONE, BODY, sender=SENDER)
        second = await sender.send_sms(PHONE, BODY, sender=SENDER)

        assert len(api.requests) == 2
        assert first.provider_id != second.provider_id

    async def test_logs_code_sent_with_phone_tail_and_sid_only(
        self, sender: TwilioCodeSender
    ) -> None:
        """code_sent names the last two digits and the Message SID, never number or body."""
        with structlog.testing.capture_logs() as entries:
            delivery = await sender.send_sms(PHONE, BODY, sender=SENDER)

        [entry] = [e for e in entries if e["event"] == "code_sent"]
        assert entry["phone_tail"] == "87"
        assert entry["provider_id"] == delivery.provider_id
        _assert_no_secret(_rendered_logs(entries))


class TestCall:
    async def test_places_call_with_twiml_and_caller_id(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """A call is one POST to Calls.json with To, From (caller id) and the TwiML."""
        delivery = await sender.call(PHONE, TWIML, caller_id=SENDER)

        [request] = api.requests
        assert request.resource == "Calls"
        assert request.authorized
        assert (request.to, request.from_, request.twiml) == (PHONE, SENDER, TWIML)
        assert delivery.provider_id.startswith("CA")

    async def test_call_failure_is_mapped_like_sms(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """A refused call raises a permanent DeliveryFailed with Twilio's code."""
        api.reply = Reply.INVALID_NUMBER
        with pytest.raises(DeliveryFailed) as caught:
            await sender.call(PHONE, TWIML, caller_id=SENDER)

        assert caught.value.permanent
        assert caught.value.code == 21211
        _assert_no_secret(_rendered(caught.value))


class TestErrors:
    async def test_invalid_number_is_permanent_with_twilio_code(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
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
        self, api: FakeTwilioApi, sender: TwilioCodeSender, reply: Reply, code: int
    ) -> None:
        """429 and 5xx are outages: not permanent, so the fail mode decides."""
        api.reply = reply
        failure = await _failure(sender)

        assert not failure.permanent
        assert failure.code == code

    async def test_unavailable_is_posted_exactly_once(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """A 503 is not retried: the message may have gone out, so one POST only."""
        api.reply = Reply.UNAVAILABLE
        await _failure(sender)  # a retrying client would POST again before raising

        assert len(api.requests) == 1

    async def test_hanging_api_fails_within_timeout(
        self, api: FakeTwilioApi, sender: TwilioCodeSender
    ) -> None:
        """A server that never answers gives a transient DeliveryFailed after the timeout."""
        api.reply = Reply.HANG
        started = time.monotonic()
        failure = await _failure(sender)
        elapsed = time.monotonic() - started

        assert not failure.permanent
        assert failure.code is None
        assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1.0  # hang guard, not a speed check
        assert len(api.requests) == 1

    async def test_wrong_auth_token_is_a_config_fault_not_permanent(
        self, api: FakeTwilioApi
    ) -> None:
        """A 401 is the proxy's fault, not the number's: not permanent, logged at error."""
        client = TwilioCodeSender(
            account_sid=ACCOUNT_SID, auth_token=WRONG_TOKEN, api_base_url=api.base_url
        )
        try:
            with (
                structlog.testing.capture_logs() as entries,
                pytest.raises(DeliveryFailed) as caught,
            ):
                await client.send_sms(PHONE, BODY, sender=SENDER)
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
        client = TwilioCodeSender(
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
        self, api: FakeTwilioApi, sender: TwilioCodeSender, reply: Reply
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
        client = TwilioCodeSender(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)

        assert AUTH_TOKEN not in repr(client)

    async def test_close_is_idempotent_and_safe_before_use(self) -> None:
        """close() works on a sender that never sent and when called twice."""
        client = TwilioCodeSender(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
        await client.close()
        await client.close()

    def test_rejects_non_positive_timeout(self) -> None:
        """A zero timeout is a programming error, caught at construction."""
        with pytest.raises(ValueError, match="timeout"):
            TwilioCodeSender(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, timeout=0)
