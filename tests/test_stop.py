"""Stopping ``mfa-radius serve`` with a real signal: every request in flight is answered.

The proxy runs as a child process. Its requests are slow for real: each one texts a code
through the real twilio SDK to the local fake of Twilio's REST API, which is made to hang, so
every request waits for the proxy's own delivery deadline (``[delivery] timeout``) and is then
answered with Access-Reject (fail mode secure). The signal is sent once the fake holds every
request, that is while all of them are in flight. The replies are read after the process has
exited: loopback UDP queues a datagram in the receiving socket before ``sendto`` returns, so
what the proxy sent is there, and what is not there was never sent.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mfa_radius import app, config
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.radius import codec
from mfa_radius.radius.packet import AttrType, Code
from tests.support import proxy
from tests.support.ports import LOOPBACK, free_udp_port
from tests.support.proxy import SECRET, ProxyProcess
from tests.support.twilio_api import FakeTwilioApi, Reply

ACCOUNT = "AC" + "0" * 32
TOKEN = "test-twilio-auth-token-0123456789"
USERS = [f"user{i}" for i in range(6)]
DELIVERY_TIMEOUT = 3.0
"""Seconds each request waits for the hanging provider before it is answered."""


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioApi]:
    """The Twilio fake, holding every request without an answer."""
    async with FakeTwilioApi(account_sid=ACCOUNT, auth_token=TOKEN) as api:
        api.reply = Reply.HANG
        yield api


@pytest.fixture
async def served(tmp_path: Path, twilio: FakeTwilioApi) -> AsyncIterator[ProxyProcess]:
    """``mfa-radius serve`` texting through the fake, with every user of USERS enrolled."""
    (tmp_path / "twilio.token").write_text(TOKEN + "\n")
    (tmp_path / "twilio.token").chmod(0o600)
    cfg = proxy.write_config(
        tmp_path,
        port=free_udp_port(),
        profile='primary = "none"\nfactors = ["sms"]\nsms_sender = "+12025550143"\n'
        "response_window = 8.0",
        extra=f"""
[twilio]
account_sid = "{ACCOUNT}"
auth_token_file = "twilio.token"
api_base_url = "{twilio.base_url}"

[delivery]
sender = "twilio"
timeout = {DELIVERY_TIMEOUT}

[limits]
cooldown = 0.0
""",
    )
    store = await app.open_enrolments(config.load(cfg.path))
    try:
        for index, user in enumerate(USERS):
            await store.add_user(user, display_name=user.title(), phone=f"+1415555010{index}")
    finally:
        await store.close()
    node = ProxyProcess(cfg, tmp_path / "proxy.log")
    await asyncio.to_thread(node.start)
    try:
        yield node
    finally:
        await asyncio.to_thread(node.stop)


class Nas:
    """One NAS socket sending one Access-Request; its replies are read without waiting."""

    def __init__(self, port: int, user: str) -> None:
        self._port = port
        self._client = RadiusClient(LOOPBACK, port, SECRET.encode())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self._data, self._ident, self._auth = self._client.build_request(
            [(AttrType.USER_NAME, user.encode())], password=b"pw"
        )

    async def send(self) -> None:
        """Send the request."""
        await asyncio.get_running_loop().sock_sendto(self.sock, self._data, (LOOPBACK, self._port))

    def queued(self) -> list[bytes]:
        """Every datagram waiting in the socket now."""
        found = []
        while True:
            try:
                found.append(self.sock.recv(4096))
            except BlockingIOError:
                return found

    def is_reply(self, data: bytes) -> bool:
        """The datagram is the genuine reply to this request (identifier, authenticators)."""
        return self._client.verify_reply(data, self._ident, self._auth)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_every_request_in_flight_at_the_signal_is_answered_before_exit_0(
    served: ProxyProcess, twilio: FakeTwilioApi, sig: signal.Signals
) -> None:
    """Six requests waiting on the provider when the signal comes: six replies, exit 0."""
    nases = [Nas(served.cfg.port, user) for user in USERS]
    try:
        for nas in nases:
            await nas.send()
        await proxy.until(lambda: len(twilio.requests) == len(USERS), "every text reached Twilio")
        served.send_signal(sig)
        exit_code = await asyncio.to_thread(served.wait)
        replies = [nas.queued() for nas in nases]
    finally:
        for nas in nases:
            nas.sock.close()
    assert exit_code == 0
    for nas, got in zip(nases, replies, strict=True):
        assert len(got) == 1
        assert nas.is_reply(got[0])
        assert codec.decode(got[0]).code is Code.ACCESS_REJECT
    events = [line["event"] for line in served.events()]
    finished = served.events("request_finished")
    assert sorted(line["user"] for line in finished) == USERS
    assert events.index("server_stopping") < events.index("request_finished")
    assert served.events("server_draining")[0]["in_flight"] == len(USERS)
    counters = served.events("server_stopped")[0]["counters"]
    assert counters["outcome:reject"] == len(USERS)
    assert "drop:shutting_down" not in counters


async def test_request_arriving_after_the_stop_began_gets_no_reply_and_is_counted(
    served: ProxyProcess, twilio: FakeTwilioApi
) -> None:
    """A request sent during the drain is dropped (shutting_down); the one in flight is answered."""
    early, late = Nas(served.cfg.port, USERS[0]), Nas(served.cfg.port, USERS[1])
    try:
        await early.send()
        await proxy.until(lambda: len(twilio.requests) == 1, "the first text reached Twilio")
        served.send_signal(signal.SIGTERM)
        assert await served.wait_for_output('"server_stopping"', timeout=10.0)
        await late.send()
        exit_code = await asyncio.to_thread(served.wait)
        early_replies, late_replies = early.queued(), late.queued()
    finally:
        early.sock.close()
        late.sock.close()
    assert exit_code == 0
    assert len(early_replies) == 1
    assert early.is_reply(early_replies[0])
    assert late_replies == []
    assert len(twilio.requests) == 1
    assert [line["user"] for line in served.events("request_finished")] == [USERS[0]]
    counters = served.events("server_stopped")[0]["counters"]
    assert counters["drop:shutting_down"] == 1
