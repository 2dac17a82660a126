"""SMS and approve calls end to end: two proxy processes on one Redis, the real twilio SDK
talking to a local fake of Twilio's REST API, and signed webhooks posted to the proxies."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from mfa_radius import app, config
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.radius import codec
from mfa_radius.radius.packet import AttrType, Code
from tests.support import proxy
from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.proxy import SECRET
from tests.support.twilio_api import FakeTwilioApi

ACCOUNT = "AC" + "0" * 32
TOKEN = "test-twilio-auth-token-0123456789"
PHONE = "+14155550123"
PUBLIC = "https://mfa.example.org/twilio"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi(account_sid=ACCOUNT, auth_token=TOKEN) as api:
        yield api


def _profile(mode: str) -> str:
    if mode == "approve":
        factors = 'mode = "approve"\nfactors = ["approve"]\nresponse_window = 8.0'
    else:
        factors = 'factors = ["sms", "voice"]\nsms_sender = "+12025550143"'
    caller = 'voice_caller_id = "+12025550143"\norganisation = "Example Corp"'
    return f'primary = "none"\n{factors}\n{caller}'


def _extra(twilio: FakeTwilioApi, directory: Path, hook_port: int) -> str:
    (directory / "twilio.token").write_text(TOKEN + "\n")
    (directory / "twilio.token").chmod(0o600)
    return f"""
[twilio]
account_sid = "{ACCOUNT}"
auth_token_file = "twilio.token"
api_base_url = "{twilio.base_url}"

[webhook]
listen = "127.0.0.1:{hook_port}"
public_url = "{PUBLIC}"

[limits]
cooldown = 0.0
"""


@pytest.fixture
def nodes(
    tmp_path: Path, redis_url: str, twilio: FakeTwilioApi, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess, list[int]]]:
    mode = getattr(request, "param", "challenge")
    shared_db = str(tmp_path / "shared.db")
    made, hook_ports = [], []
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        hook_port = free_tcp_port()
        hook_ports.append(hook_port)
        cfg = proxy.write_config(
            directory,
            port=free_udp_port(),
            store="redis",
            redis_url=redis_url,
            node=f"node-{name}",
            database=shared_db,
            profile=_profile(mode),
            extra=_extra(twilio, directory, hook_port),
        )
        made.append(proxy.ProxyProcess(cfg, tmp_path / f"{name}.log"))

    async def run() -> AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess, list[int]]]:
        store = await app.open_enrolments(config.load(made[0].cfg.path))
        try:
            await store.add_user("pat", display_name="Pat", phone=PHONE)
        finally:
            await store.close()
        for node in made:
            await asyncio.to_thread(node.start)
        try:
            yield made[0], made[1], hook_ports
        finally:
            for node in made:
                await asyncio.to_thread(node.stop)

    return run()


async def test_one_text_when_the_request_reaches_both_nodes(
    nodes: AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess, list[int]]],
    twilio: FakeTwilioApi,
) -> None:
    """The same Access-Request sent to node A, then to node B (fail-over): one SMS in all."""
    async for node_a, node_b, _ in nodes:
        async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode()) as nas:
            data, _, _ = nas.build_request([(AttrType.USER_NAME, b"pat")], password=b"pw")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            from_a = await proxy.exchange(sock, data, node_a.cfg.port)
            from_a_again = await proxy.exchange(sock, data, node_a.cfg.port)
            from_b = await proxy.exchange(sock, data, node_b.cfg.port)
        assert codec.decode(from_a).code is Code.ACCESS_CHALLENGE
        assert from_a == from_a_again == from_b
        messages = [r for r in twilio.requests if r.resource == "Messages"]
        assert len(messages) == 1
        assert messages[0].to == PHONE
        assert messages[0].authorized


async def test_texted_code_finishes_the_login_on_the_other_node(
    nodes: AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess, list[int]]],
    twilio: FakeTwilioApi,
) -> None:
    """Node A texts the code; node B accepts it; the audit lines carry only the phone tail."""
    async for node_a, node_b, _ in nodes:
        user = [(AttrType.USER_NAME, b"pat")]
        async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=5) as nas:
            challenge = await nas.request(user, password=b"pw")
        state = challenge.get(AttrType.STATE)
        assert state is not None
        body = twilio.requests[-1].body or ""
        found = re.search(r"\b\d{6}\b", body)
        assert found is not None
        code = found.group(0)
        async with RadiusClient("127.0.0.1", node_b.cfg.port, SECRET.encode(), timeout=5) as nas:
            accept = await nas.request([*user, (AttrType.STATE, state)], password=code.encode())
        assert accept.code is Code.ACCESS_ACCEPT
        await node_a.wait_for_output('"phone_tail":"23"')
        for node in (node_a, node_b):
            assert PHONE not in node.output()
            assert code not in node.output()
            assert TOKEN not in node.output()


async def test_provider_outage_rejects_without_a_second_try(
    nodes: AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess, list[int]]],
    twilio: FakeTwilioApi,
) -> None:
    """Twilio answers 503: the login is rejected (fail mode secure) and the POST was made once."""
    from tests.support.twilio_api import Reply

    async for node_a, _, _ in nodes:
        twilio.reply = Reply.UNAVAILABLE
        async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=5) as nas:
            reject = await nas.request([(AttrType.USER_NAME, b"pat")], password=b"pw")
        assert reject.code is Code.ACCESS_REJECT
        assert len(twilio.requests) == 1
        assert await node_a.wait_for_output('"reason":"delivery_unavailable"')


def _signed_post(url: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}


@pytest.mark.parametrize("nodes", ["approve"], indirect=True)
async def test_approve_keypress_reaching_the_other_node_accepts(
    nodes: AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess, list[int]]],
    twilio: FakeTwilioApi,
) -> None:
    """RD Gateway style: A calls; Twilio's webhook reaches B; A answers Accept at once."""
    async for node_a, _, hook_ports in nodes:
        async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=9) as nas:
            login = asyncio.ensure_future(
                nas.request([(AttrType.USER_NAME, b"pat")], password=b"pw")
            )
            for _ in range(300):
                if twilio.requests:
                    break
                await asyncio.sleep(0.02)
            twiml = twilio.requests[-1].twiml or ""
            found = re.search(r'action="([^"]+)"', twiml)
            assert found is not None
            public_action = found.group(1).replace("&amp;", "&")
            local = public_action.replace(PUBLIC, f"http://127.0.0.1:{hook_ports[1]}/twilio")
            params = {"CallSid": "CA1", "Digits": "1", "AccountSid": ACCOUNT}
            async with aiohttp.ClientSession() as session:
                forged = await session.post(
                    local, data=params, headers={"X-Twilio-Signature": "AAAA"}
                )
                assert forged.status == 403
                signed = await session.post(
                    local, data=params, headers=_signed_post(public_action, params)
                )
                assert signed.status == 200
            accept = await login
        assert accept.code is Code.ACCESS_ACCEPT
        calls = [r for r in twilio.requests if r.resource == "Calls"]
        assert len(calls) == 1
