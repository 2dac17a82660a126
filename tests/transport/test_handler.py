"""The request handler: every cluster claim ends, and no reply is promised that cannot be sent.

A request is claimed in the shared store before it is decided, so a retransmission reaching
another node waits for this node's reply instead of starting a second login. A reply may not
exceed 4096 octets (RFC 2865 §3) and must echo the request's Proxy-State (RFC 2865 §5.33), so
a NAS that sends almost 4 KB of Proxy-State asks for a reply that cannot exist. These tests
send such requests for real, over UDP to the in-process proxy or straight to the handler, and
check with a real Redis that nothing stays behind: no claim left "in progress", no challenge
stored for a prompt that could never be sent, and the NAS's retransmission dropped the same
counted way on the same node.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from structlog.testing import capture_logs

from mfa_radius import app
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.core.model import Mode
from mfa_radius.core.policy import ClientPolicy
from mfa_radius.engine import Profile
from mfa_radius.radius import codec
from mfa_radius.radius.clients import Client, ClientTable
from mfa_radius.radius.endpoint import Endpoint, NewRequest
from mfa_radius.radius.packet import Attribute, AttrType, Code
from mfa_radius.transport.handler import ENGINE_REPLY_OCTETS, Handled, RequestHandler
from tests.support import proxy
from tests.support.clock import FakeClock
from tests.support.logins import Logins
from tests.support.primaries import StaticPrimary
from tests.support.proxy import SECRET

PROXY_STATE: list[Attribute] = [(AttrType.PROXY_STATE, bytes([65 + i]) * 253) for i in range(15)]
PROXY_STATE.append((AttrType.PROXY_STATE, b"z" * 170))
"""3,997 octets of Proxy-State: the request fits in 4096 octets, its challenge would not."""

FIXED_PART = codec.HEADER_LENGTH + 18
"""Header and Message-Authenticator: what every reply takes besides Proxy-State."""


def _proxy_state(total: int) -> list[Attribute]:
    """Proxy-State attributes taking exactly ``total`` octets, as few and as even as can be."""
    count = -(-total // 255)
    size, longer = divmod(total, count)
    return [(AttrType.PROXY_STATE, b"p" * (size + (i < longer) - 2)) for i in range(count)]


LARGEST_THAT_FITS = _proxy_state(codec.MAX_PACKET_LENGTH - FIXED_PART - ENGINE_REPLY_OCTETS)
"""Proxy-State that leaves exactly room for the largest challenge or reject."""


async def _keys(url: str, pattern: str) -> list[bytes]:
    client = Redis.from_url(url, socket_timeout=2.0)
    try:
        return [key async for key in client.scan_iter(match=pattern)]
    finally:
        await client.aclose()


async def _claims(url: str) -> list[bytes]:
    return await _keys(url, "mfa:req:*")


async def _challenges(url: str) -> list[bytes]:
    return await _keys(url, "mfa:chal:*")


def _port(running: app.Running) -> int:
    return running.addresses[0][1]


def _failed(counters: Counter[str], times: int) -> Callable[[], bool]:
    """Whether the listener has dropped ``times`` requests after an internal error."""
    return lambda: counters["drop:internal_error"] >= times


def _dropped(counters: Counter[str], times: int) -> Callable[[], bool]:
    """Whether the listener has dropped ``times`` requests as too large to answer."""
    return lambda: counters["drop:reply_too_large"] >= times


class TestClaims:
    async def test_request_whose_reply_cannot_fit_is_dropped_leaving_no_claim_or_challenge(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """Too much Proxy-State: a counted drop, no claim, no challenge; its retransmission too."""
        cfg = proxy.write_config(
            tmp_path, store="redis", redis_url=redis_url, profile='primary = "none"'
        )
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice")
            counters = running.servers[0].counters
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
                data, _, _ = nas.build_request(
                    [(AttrType.USER_NAME, b"alice"), *PROXY_STATE], password=b"x"
                )
                with capture_logs() as logs:
                    for sent in (1, 2):  # the NAS retransmits the same request
                        nas.send_raw(data)
                        await proxy.until(_dropped(counters, sent), "the drop")
                        assert await nas.receive_raw(0.2) is None
                        assert await _claims(redis_url) == []
                        assert await _challenges(redis_url) == []
        assert counters["drop:reply_too_large"] == 2
        assert counters["drop:duplicate_in_progress_cluster"] == 0
        assert counters["drop:internal_error"] == 0
        events = [(e["event"], e.get("reason"), e["log_level"]) for e in logs]
        assert events.count(("request_dropped", "reply_too_large", "debug")) == 2
        assert not [e for e in logs if e["event"] in ("request_failed", "request_finished")]

    async def test_claim_is_released_when_the_request_fails(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """A request that raises leaves no claim: its retransmission is decided again.

        The failure is real: a token row corrupted in the SQLite file (``digits`` not a
        number) makes the enrolment lookup raise something no fail mode knows.
        """
        cfg = proxy.write_config(
            tmp_path, store="redis", redis_url=redis_url, profile='primary = "none"'
        )
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice")
            with sqlite3.connect(tmp_path / "enrolment.db") as db:
                db.execute("UPDATE totp_tokens SET digits = 'six'")
            counters = running.servers[0].counters
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
                data, _, _ = nas.build_request([(AttrType.USER_NAME, b"alice")], password=b"x")
                with capture_logs() as logs:
                    for sent in (1, 2):  # the NAS retransmits the same request
                        nas.send_raw(data)
                        await proxy.until(_failed(counters, sent), "the failure")
                        assert await _claims(redis_url) == []
        assert counters["drop:internal_error"] == 2
        assert counters["drop:duplicate_in_progress_cluster"] == 0
        assert [e["event"] for e in logs].count("request_failed") == 2

    async def test_accept_too_large_for_the_proxy_state_is_dropped_and_its_claim_released(
        self, tmp_path: Path, redis_url: str, clock: FakeClock
    ) -> None:
        """The primary's attributes beside the Proxy-State exceed 4096: a counted drop, no claim."""
        cfg = proxy.write_config(tmp_path, store="redis", redis_url=redis_url)
        async with proxy.in_process(cfg) as running:
            table = ClientTable(
                [Client("nas", (ipaddress.ip_network("127.0.0.0/8"),), SECRET.encode())]
            )
            endpoint = Endpoint(table)
            classes = tuple((int(AttrType.CLASS), bytes([48 + i]) * 253) for i in range(5))
            handler = RequestHandler(
                endpoint=endpoint,
                engine=Logins(users=running.enrolments, store=running.store, clock=clock).engine,
                profiles={
                    "nas": Profile(
                        ClientPolicy(name="nas", mode=Mode.NONE), StaticPrimary(b"pw", classes)
                    )
                },
                replies=running.store,
                clock=clock,
                node="lab",
            )
            authenticator = bytes(range(16))
            attributes: list[Attribute] = [
                (AttrType.USER_NAME, b"alice"),
                (
                    AttrType.USER_PASSWORD,
                    codec.hide_password(b"pw", SECRET.encode(), authenticator),
                ),
                *((AttrType.PROXY_STATE, bytes([97 + i]) * 250) for i in range(12)),
            ]
            data = codec.encode_request(
                Code.ACCESS_REQUEST, 7, authenticator, attributes, SECRET.encode()
            )
            src = ("127.0.0.1", 40000)
            for _ in range(2):  # the retransmission is decided again, and dropped again
                request = endpoint.receive(data, src, clock.now())
                assert isinstance(request, NewRequest)
                with capture_logs() as logs:
                    handled = await handler.handle(request, src, "127.0.0.1")
                assert handled == Handled(None, ("drop:reply_too_large",))
                assert await _claims(redis_url) == []
                finished = [e for e in logs if e["event"] == "request_finished"]
                assert [(e["outcome"], e["reason"]) for e in finished] == [
                    ("drop", "reply_too_large")
                ]
                assert not [e for e in logs if e["event"] == "request_failed"]

    async def test_answered_request_leaves_its_reply_not_a_claim(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """An answered request's claim turns into the reply another node would resend."""
        cfg = proxy.write_config(
            tmp_path, store="redis", redis_url=redis_url, profile='primary = "none"'
        )
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice")
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
                data, _, _ = nas.build_request([(AttrType.USER_NAME, b"alice")], password=b"x")
                nas.send_raw(data)
                reply = await nas.receive_raw(3.0)
        assert reply is not None
        client = Redis.from_url(redis_url, socket_timeout=2.0)
        try:
            stored = [await client.get(key) for key in await _claims(redis_url)]
        finally:
            await client.aclose()
        assert stored == [reply]


class TestReplyBound:
    async def test_challenge_is_sent_when_the_largest_reply_just_fits(self, tmp_path: Path) -> None:
        """Proxy-State leaving exactly 510 octets: the challenge is issued and sent."""
        cfg = proxy.write_config(tmp_path, profile='primary = "none"')
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice")
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
                data, _, _ = nas.build_request(
                    [(AttrType.USER_NAME, b"alice"), *LARGEST_THAT_FITS], password=b"x"
                )
                nas.send_raw(data)
                reply = await nas.receive_raw(3.0)
        assert reply is not None
        packet = codec.decode(reply)
        assert packet.code is Code.ACCESS_CHALLENGE
        assert [a for a in packet.attributes if a[0] == AttrType.PROXY_STATE] == LARGEST_THAT_FITS

    async def test_request_is_dropped_when_one_more_octet_of_proxy_state_is_sent(
        self, tmp_path: Path
    ) -> None:
        """One octet past the bound: dropped as reply_too_large, nothing sent."""
        cfg = proxy.write_config(tmp_path, profile='primary = "none"')
        one_more = _proxy_state(codec.MAX_PACKET_LENGTH - FIXED_PART - ENGINE_REPLY_OCTETS + 1)
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice")
            counters = running.servers[0].counters
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
                data, _, _ = nas.build_request(
                    [(AttrType.USER_NAME, b"alice"), *one_more], password=b"x"
                )
                nas.send_raw(data)
                await proxy.until(_dropped(counters, 1), "the drop")
                assert await nas.receive_raw(0.2) is None
