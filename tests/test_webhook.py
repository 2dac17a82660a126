"""WebhookServer over real loopback HTTP, and the meaning of the keys it receives.

Callbacks are signed the way Twilio signs them: twilio's own ``RequestValidator`` computes the
signature over the public URL the proxy gave Twilio. Results land in a real store (memory, or
two Redis stores for two nodes), which serves as both the result bus and the replay marks. "No
store access" is shown with a store that cannot answer: any store call would turn the reply
into 503. The TwiML documents themselves are tested in ``tests/adapters/test_twilio_twiml.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import pytest
import structlog
from twilio.request_validator import RequestValidator

from mfa_radius.adapters.memory_store import MemoryChallengeStore
from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.core.call_result import CallResult, result_for_digits
from mfa_radius.ports import Marks, ResultBus
from mfa_radius.webhook import TOKEN_BYTES, WebhookServer
from tests.support.clock import FakeClock
from tests.support.ports import LOOPBACK, free_tcp_port
from tests.support.subscriptions import until_subscribed_at

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://mfa.example.org/twilio"
WAIT_S = 60.0
"""Timeout of a login's wait in these tests: it never runs out while a test lasts."""
WAKE_BOUND_S = 5.0
"""Deadline for a waiter to wake: generous, yet far below WAIT_S, so that only a wake-up by
the callback meets it, never the wait's own timeout (and its final read of the result)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def sign(url: str, form: Mapping[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send for ``form`` posted to ``url``."""
    signature: str = RequestValidator(AUTH_TOKEN).compute_signature(url, dict(form))
    return signature


def parse_twiml(document: str) -> ET.Element:
    """Parse TwiML produced by the code under test (our own output, not untrusted input)."""
    return ET.fromstring(document)  # noqa: S314 - our own TwiML, see above


def gather_form(digits: str | None) -> dict[str, str]:
    """The fields of a Gather action callback (a subset of what Twilio sends)."""
    form = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": "CA" + "1" * 32,
        "CallStatus": "in-progress",
        "From": "+15005550006",
        "To": "+41790000000",
    }
    if digits is not None:
        form["Digits"] = digits
    return form


class Hook:
    """A started WebhookServer with a client that posts to it as Twilio would."""

    def __init__(self, server: WebhookServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    def local_url(self, query: str) -> str:
        return f"http://{LOOPBACK}:{self.server.port}/twilio/approve{query}"

    async def post(
        self,
        token: str,
        form: Mapping[str, str],
        *,
        signature: str | None = None,
        signed: bool = True,
    ) -> tuple[int, str, str]:
        """POST ``form`` for ``token``, signed over the public URL unless told otherwise."""
        headers = {}
        if signed:
            headers["X-Twilio-Signature"] = signature or sign(self.server.action_url(token), form)
        async with self.session.post(
            self.local_url(f"?t={token}"), data=dict(form), headers=headers
        ) as response:
            return response.status, response.content_type, await response.text()


class HookStore(ResultBus, Marks, Protocol):
    """A store that is both ports the webhook uses, as the memory and Redis stores are."""


async def start_hook(store: HookStore) -> WebhookServer:
    server = WebhookServer(
        listen_host=LOOPBACK,
        listen_port=0,
        public_url=PUBLIC_URL,
        auth_token=AUTH_TOKEN,
        results=store,
        marks=store,
    )
    await server.start()
    return server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def store(clock: FakeClock) -> AsyncIterator[MemoryChallengeStore]:
    memory = MemoryChallengeStore(clock)
    yield memory
    await memory.close()


@pytest.fixture
async def hook(store: MemoryChallengeStore, session: aiohttp.ClientSession) -> AsyncIterator[Hook]:
    server = await start_hook(store)
    yield Hook(server, session)
    await server.close()


@pytest.fixture
async def dead_store_hook(session: aiohttp.ClientSession) -> AsyncIterator[Hook]:
    """A webhook whose store is a Redis nobody listens on: any store call fails (503)."""
    dead = RedisChallengeStore(port=free_tcp_port())
    server = await start_hook(dead)
    yield Hook(server, session)
    await server.close()
    await dead.close()


class TestApproveCallback:
    async def test_publishes_approve_when_digit_1(
        self, hook: Hook, store: MemoryChallengeStore
    ) -> None:
        """A signed callback with Digits=1 publishes "approve" under the token."""
        token = new_token()
        status, _, _ = await hook.post(token, gather_form("1"))
        assert status == 200
        assert await store.wait_result(token, 0.0) == "approve"

    async def test_publishes_fraud_when_digit_9(
        self, hook: Hook, store: MemoryChallengeStore
    ) -> None:
        """Digits=9 publishes "fraud"."""
        token = new_token()
        await hook.post(token, gather_form("9"))
        assert await store.wait_result(token, 0.0) == "fraud"

    @pytest.mark.parametrize("digits", ["2", "0", "*", "#", "", "11", None])
    async def test_publishes_deny_when_other_key(
        self, hook: Hook, store: MemoryChallengeStore, digits: str | None
    ) -> None:
        """Any other key, no key, or no Digits field publishes "deny"."""
        token = new_token()
        await hook.post(token, gather_form(digits))
        assert await store.wait_result(token, 0.0) == "deny"

    async def test_wakes_waiter_when_callback_arrives(
        self, hook: Hook, store: MemoryChallengeStore
    ) -> None:
        """A login already waiting on the token wakes as soon as the callback is handled."""
        token = new_token()
        waiter = asyncio.create_task(store.wait_result(token, WAIT_S))
        # The memory store registers a waiter on the task's first step, before its first
        # await: one turn of the event loop is the whole condition, no time has to pass.
        await asyncio.sleep(0)
        assert not waiter.done()
        await hook.post(token, gather_form("1"))
        assert await asyncio.wait_for(waiter, WAKE_BOUND_S) == "approve"

    async def test_replies_with_twiml(self, hook: Hook) -> None:
        """The answer is TwiML that thanks the callee."""
        status, content_type, body = await hook.post(new_token(), gather_form("1"))
        assert (status, content_type) == (200, "text/xml")
        assert parse_twiml(body).findtext("Say") == "Thank you. You may hang up."

    async def test_reply_says_reported_when_fraud(self, hook: Hook) -> None:
        """After a 9 the callee hears that the attempt was reported."""
        _, _, body = await hook.post(new_token(), gather_form("9"))
        assert "reported" in (parse_twiml(body).findtext("Say") or "")

    async def test_logs_answer_without_token(self, hook: Hook) -> None:
        """The answer is logged with its result and a token id, never the token itself."""
        token = new_token()
        with structlog.testing.capture_logs() as logs:
            await hook.post(token, gather_form("1"))
        [entry] = [e for e in logs if e["event"] == "webhook_answered"]
        assert entry["result"] == "approve"
        assert token not in repr(logs)


class TestReplay:
    async def test_replay_changes_nothing(self, hook: Hook, store: MemoryChallengeStore) -> None:
        """A second signed callback for an answered token keeps the first result."""
        token = new_token()
        await hook.post(token, gather_form("2"))
        status, _, body = await hook.post(token, gather_form("1"))
        assert status == 200
        assert parse_twiml(body).tag == "Response"
        assert await store.wait_result(token, 0.0) == "deny"

    async def test_replay_is_logged(self, hook: Hook) -> None:
        """A replayed callback is logged as webhook_replayed."""
        token = new_token()
        await hook.post(token, gather_form("1"))
        with structlog.testing.capture_logs() as logs:
            await hook.post(token, gather_form("1"))
        assert [e["event"] for e in logs] == ["webhook_replayed"]


class TestSignature:
    async def test_rejects_forged_signature(self, hook: Hook, store: MemoryChallengeStore) -> None:
        """A signature made with another auth token gets 403 and records nothing."""
        token = new_token()
        form = gather_form("1")
        forged = RequestValidator("f" * 32).compute_signature(hook.server.action_url(token), form)
        status, _, _ = await hook.post(token, form, signature=forged)
        assert status == 403
        assert await store.wait_result(token, 0.0) is None

    async def test_rejects_missing_signature(self, hook: Hook, store: MemoryChallengeStore) -> None:
        """A callback without X-Twilio-Signature gets 403 and records nothing."""
        token = new_token()
        status, _, _ = await hook.post(token, gather_form("1"), signed=False)
        assert status == 403
        assert await store.wait_result(token, 0.0) is None

    async def test_rejects_signature_over_request_host(
        self, hook: Hook, store: MemoryChallengeStore
    ) -> None:
        """A signature over the URL as this listener sees it (not the public URL) is refused."""
        token = new_token()
        form = gather_form("1")
        status, _, _ = await hook.post(
            token, form, signature=sign(hook.local_url(f"?t={token}"), form)
        )
        assert status == 403
        assert await store.wait_result(token, 0.0) is None

    async def test_rejects_changed_digits(self, hook: Hook, store: MemoryChallengeStore) -> None:
        """A signature over Digits=2 does not cover a body saying Digits=1."""
        token = new_token()
        signature = sign(hook.server.action_url(token), gather_form("2"))
        status, _, _ = await hook.post(token, gather_form("1"), signature=signature)
        assert status == 403
        assert await store.wait_result(token, 0.0) is None

    async def test_rejects_signature_for_other_token(
        self, hook: Hook, store: MemoryChallengeStore
    ) -> None:
        """A genuine callback for one token cannot be replayed against another token."""
        token, other = new_token(), new_token()
        form = gather_form("1")
        status, _, _ = await hook.post(
            other, form, signature=sign(hook.server.action_url(token), form)
        )
        assert status == 403
        assert await store.wait_result(other, 0.0) is None

    async def test_logs_rejection_without_secrets(self, hook: Hook) -> None:
        """A rejection is logged with its reason and no auth token, signature or call token."""
        token = new_token()
        bad_signature = "A" * 27 + "="
        with structlog.testing.capture_logs() as logs:
            await hook.post(token, gather_form("1"), signature=bad_signature)
        [entry] = logs
        assert (entry["event"], entry["reason"]) == ("webhook_rejected", "bad_signature")
        assert not any(s in repr(logs) for s in (AUTH_TOKEN, bad_signature, token))

    async def test_forged_signature_makes_no_store_call(self, dead_store_hook: Hook) -> None:
        """A forged callback is refused before the store is asked anything."""
        status, _, _ = await dead_store_hook.post(
            new_token(), gather_form("1"), signature="A" * 27 + "="
        )
        assert status == 403


BAD_QUERIES = [
    pytest.param("", id="no-token"),
    pytest.param("?t=", id="empty"),
    pytest.param("?t=short", id="too-short"),
    pytest.param("?t=" + "A" * 23, id="too-long"),
    pytest.param("?t=" + "A" * 21 + "%2F", id="slash"),
    pytest.param("?t=" + "A" * 21 + "%00", id="nul"),
]


class TestRequestShape:
    @pytest.mark.parametrize("query", BAD_QUERIES)
    async def test_rejects_bad_token_without_store_access(
        self, dead_store_hook: Hook, query: str
    ) -> None:
        """A token not shaped like one the proxy issues gets 400 before any store call."""
        url = dead_store_hook.local_url(query)
        async with dead_store_hook.session.post(url, data=gather_form("1")) as response:
            assert response.status == 400

    async def test_rejects_body_over_limit(self, hook: Hook, store: MemoryChallengeStore) -> None:
        """A body beyond 16 KiB is refused with 413 and records nothing."""
        token = new_token()
        form = gather_form("1") | {"Padding": "x" * 20_000}
        status, _, _ = await hook.post(token, form)
        assert status == 413
        assert await store.wait_result(token, 0.0) is None

    async def test_rejects_get_on_approve(self, hook: Hook) -> None:
        """Only POST reaches the approve route."""
        async with hook.session.get(hook.local_url(f"?t={new_token()}")) as response:
            assert response.status == 405

    async def test_returns_503_when_store_unavailable(self, dead_store_hook: Hook) -> None:
        """A genuine callback that cannot be recorded gets 503, not a false 200."""
        status, _, _ = await dead_store_hook.post(new_token(), gather_form("1"))
        assert status == 503


class TestHealth:
    async def test_healthz_answers_ok(self, hook: Hook) -> None:
        """GET /healthz answers 200 "ok" for the reverse proxy."""
        async with hook.session.get(f"http://{LOOPBACK}:{hook.server.port}/healthz") as response:
            assert (response.status, await response.text()) == (200, "ok")


class TestTwoNodes:
    async def test_wakes_waiter_on_other_node(
        self, redis_url: str, session: aiohttp.ClientSession
    ) -> None:
        """A callback reaching node A wakes the login waiting on node B at once."""
        node_a = RedisChallengeStore(url=redis_url)
        node_b = RedisChallengeStore(url=redis_url)
        server = await start_hook(node_a)
        try:
            token = new_token()
            waiter = asyncio.create_task(node_b.wait_result(token, WAIT_S))
            await until_subscribed_at(node_b, redis_url)
            assert not waiter.done()
            status, _, _ = await Hook(server, session).post(token, gather_form("1"))
            assert status == 200
            assert await asyncio.wait_for(waiter, WAKE_BOUND_S) == "approve"
        finally:
            await server.close()
            await node_a.close()
            await node_b.close()


class TestConstruction:
    def test_repr_hides_auth_token(self, store: MemoryChallengeStore) -> None:
        """The auth token never shows in the server's repr."""
        server = WebhookServer(
            listen_host=LOOPBACK,
            listen_port=0,
            public_url=PUBLIC_URL,
            auth_token=AUTH_TOKEN,
            results=store,
            marks=store,
        )
        assert AUTH_TOKEN not in repr(server)

    @pytest.mark.parametrize(
        "url",
        ["mfa.example.org/twilio", "ftp://mfa.example.org", "https://h/x?a=1", "https://h/x#f"],
    )
    def test_rejects_bad_public_url(self, store: MemoryChallengeStore, url: str) -> None:
        """A public URL Twilio could not sign reproducibly is a configuration error."""
        with pytest.raises(ValueError, match="public_url"):
            WebhookServer(
                listen_host=LOOPBACK,
                listen_port=0,
                public_url=url,
                auth_token=AUTH_TOKEN,
                results=store,
                marks=store,
            )

    def test_action_url_appends_route_and_token(self, store: MemoryChallengeStore) -> None:
        """The action URL is the public URL, the approve route and the token."""
        server = WebhookServer(
            listen_host=LOOPBACK,
            listen_port=0,
            public_url=PUBLIC_URL + "/",
            auth_token=AUTH_TOKEN,
            results=store,
            marks=store,
        )
        token = new_token()
        assert server.action_url(token) == f"{PUBLIC_URL}/approve?t={token}"

    def test_action_url_rejects_foreign_token(self, store: MemoryChallengeStore) -> None:
        """A token the proxy could not have issued is a programming error."""
        server = WebhookServer(
            listen_host=LOOPBACK,
            listen_port=0,
            public_url=PUBLIC_URL,
            auth_token=AUTH_TOKEN,
            results=store,
            marks=store,
        )
        with pytest.raises(ValueError, match="token"):
            server.action_url("a&b=c")


class TestResultForDigits:
    @pytest.mark.parametrize(
        ("digits", "expected"),
        [
            ("1", CallResult.APPROVE),
            ("9", CallResult.FRAUD),
            ("2", CallResult.DENY),
            ("", CallResult.DENY),
            ("19", CallResult.DENY),
            (None, CallResult.DENY),
        ],
        ids=["one", "nine", "two", "empty", "two-keys", "missing"],
    )
    def test_maps_digits_to_result(self, digits: str | None, expected: CallResult) -> None:
        """Only 1 approves and only 9 reports fraud; everything else denies."""
        assert result_for_digits(digits) is expected
