"""The request handler: every cluster claim ends, whatever becomes of the request.

A request is claimed in the shared store before it is decided, so a retransmission reaching
another node waits for this node's reply instead of starting a second login. These tests
make a request fail for real (its reply would exceed RADIUS's 4096 octets, RFC 2865 §3,
because the NAS sent almost 4 KB of Proxy-State that must be echoed) and check with a real
Redis that the claim did not stay "in progress": the NAS's retransmission is worked on again
on the same node, and no claim is left behind in Redis.
"""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from mfa_radius import app
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.radius.packet import Attribute, AttrType
from tests.support import proxy
from tests.support.proxy import SECRET

PROXY_STATE: list[Attribute] = [(AttrType.PROXY_STATE, bytes([65 + i]) * 253) for i in range(15)]
PROXY_STATE.append((AttrType.PROXY_STATE, b"z" * 170))
"""3,997 octets of Proxy-State: the request fits in 4096 octets, its challenge would not."""


async def _claims(url: str) -> list[bytes]:
    client = Redis.from_url(url, socket_timeout=2.0)
    try:
        return [key async for key in client.scan_iter(match="mfa:req:*")]
    finally:
        await client.aclose()


def _port(running: app.Running) -> int:
    return running.addresses[0][1]


class TestClaims:
    async def test_claim_is_released_when_the_request_fails(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """A request that raises leaves no claim: its retransmission is decided again."""
        cfg = proxy.write_config(
            tmp_path, store="redis", redis_url=redis_url, profile='primary = "none"'
        )
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice")
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
                data, _, _ = nas.build_request(
                    [(AttrType.USER_NAME, b"alice"), *PROXY_STATE], password=b"x"
                )
                nas.send_raw(data)
                assert await nas.receive_raw(1.0) is None
                assert running.servers[0].counters["drop:internal_error"] == 1
                assert await _claims(redis_url) == []
                nas.send_raw(data)  # the NAS retransmits the same request
                assert await nas.receive_raw(1.0) is None
            counters = running.servers[0].counters
        assert counters["drop:internal_error"] == 2
        assert counters["drop:duplicate_in_progress_cluster"] == 0
        assert await _claims(redis_url) == []

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
