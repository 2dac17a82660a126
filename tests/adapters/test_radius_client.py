"""The asyncio RADIUS client against an Endpoint-driven responder on UDP loopback."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import cast

import pytest

from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.radius.clients import Client, ClientTable
from mfa_radius.radius.endpoint import Endpoint, NewRequest, Respond
from mfa_radius.radius.packet import AttrType, Code

SECRET = b"loopback-secret"


class _Responder(asyncio.DatagramProtocol):
    """Accepts password "right", rejects anything else; answers through the Endpoint."""

    def __init__(self) -> None:
        table = ClientTable([Client("lo", (ipaddress.ip_network("127.0.0.1/32"),), SECRET)])
        self.endpoint = Endpoint(table)
        self.transport: asyncio.DatagramTransport | None = None
        self.tamper = False
        self.challenge_first = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's UDP transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        src = (str(addr[0]), int(addr[1]))
        now = asyncio.get_running_loop().time()
        event = self.endpoint.receive(data, src, now)
        if isinstance(event, Respond):
            self.transport.sendto(event.data, src)
        elif isinstance(event, NewRequest):
            attrs: list[tuple[int, bytes]] = []
            if self.challenge_first and event.packet.get(AttrType.STATE) is None:
                code = Code.ACCESS_CHALLENGE
                attrs = [(AttrType.STATE, b"s" * 16), (AttrType.REPLY_MESSAGE, b"Code?")]
            elif self.challenge_first:
                code = Code.ACCESS_ACCEPT if event.password == b"123456" else Code.ACCESS_REJECT
            else:
                code = Code.ACCESS_ACCEPT if event.password == b"right" else Code.ACCESS_REJECT
            reply = self.endpoint.reply(event, code, attrs, now)
            if self.tamper:
                reply = reply[:-1] + bytes((reply[-1] ^ 1,))
            self.transport.sendto(reply, src)


@pytest.fixture
async def server() -> AsyncIterator[tuple[_Responder, int]]:
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        _Responder, local_addr=("127.0.0.1", 0)
    )
    port = int(transport.get_extra_info("sockname")[1])
    yield responder, port
    transport.close()


async def test_request_gets_verified_reply(server: tuple[_Responder, int]) -> None:
    """A correct password gets an Access-Accept, a wrong one an Access-Reject."""
    _, port = server
    async with RadiusClient("127.0.0.1", port, SECRET, timeout=2.0) as client:
        reply = await client.request([(AttrType.USER_NAME, b"alice")], password=b"right")
        assert reply.code is Code.ACCESS_ACCEPT
        reply = await client.request([(AttrType.USER_NAME, b"alice")], password=b"wrong")
        assert reply.code is Code.ACCESS_REJECT


async def test_login_answers_the_challenge(server: tuple[_Responder, int]) -> None:
    """login() sends the password, shows the prompt, sends the answer with the State."""
    responder, port = server
    responder.challenge_first = True
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return "123456"

    async with RadiusClient("127.0.0.1", port, SECRET, timeout=2.0) as client:
        result = await client.login("alice", b"pw", answer)
    assert result.outcome == "accept"
    assert prompts == ["Code?"]
    assert result.prompts == ["Code?"]


async def test_retransmission_gets_identical_reply(server: tuple[_Responder, int]) -> None:
    """The same datagram sent twice yields the same reply bytes twice."""
    _, port = server
    async with RadiusClient("127.0.0.1", port, SECRET) as client:
        data, _, _ = client.build_request([(AttrType.USER_NAME, b"a")], password=b"right")
        client.send_raw(data)
        first = await client.receive_raw(2.0)
        client.send_raw(data)
        second = await client.receive_raw(2.0)
    assert first is not None
    assert first == second


async def test_status_server_round_trip(server: tuple[_Responder, int]) -> None:
    """status_server() returns the server's Access-Accept."""
    _, port = server
    async with RadiusClient("127.0.0.1", port, SECRET, timeout=2.0) as client:
        assert (await client.status_server()).code is Code.ACCESS_ACCEPT


async def test_ignores_tampered_reply(server: tuple[_Responder, int]) -> None:
    """A reply whose bytes changed in flight is not accepted: the request times out."""
    responder, port = server
    responder.tamper = True
    async with RadiusClient("127.0.0.1", port, SECRET, timeout=0.3) as client:
        with pytest.raises(TimeoutError):
            await client.request([(AttrType.USER_NAME, b"a")], password=b"right")


async def test_wrong_secret_times_out(server: tuple[_Responder, int]) -> None:
    """A client with the wrong secret is dropped by the server, so it times out."""
    _, port = server
    async with RadiusClient("127.0.0.1", port, b"not-the-secret", timeout=0.3) as client:
        with pytest.raises(TimeoutError):
            await client.request([], password=b"right")
