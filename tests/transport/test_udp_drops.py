"""Drops an admin can see: rate-limited WARNING lines for the drops that mean a misconfiguration.

A wrong shared secret, a NAS missing from ``[[client]]`` or a Message-Authenticator the policy
requires but the NAS does not send all make the proxy silent (RFC 2865 §3); the listener says
so at WARNING level, once per (client or source address, reason) per interval, with a count
and a hint. Real UDP over loopback, against the in-process proxy (system clock: the limit is
checked by counts within one interval) and against a listener on an injected FakeClock.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from mfa_radius import app, logs
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.radius.clients import Client, ClientTable
from mfa_radius.radius.endpoint import Endpoint
from mfa_radius.radius.packet import AttrType
from mfa_radius.transport.handler import RequestHandler
from mfa_radius.transport.udp import UdpListener
from tests.support import proxy
from tests.support.clock import FakeClock
from tests.support.logins import Logins
from tests.support.ports import LOOPBACK
from tests.support.proxy import SECRET

WRONG_SECRET = b"not-the-shared-secret-987654321"
PASSWORD = b"alice-password-1"
USER = [(AttrType.USER_NAME, b"alice")]


def _warnings(captured: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in captured if e["event"] == "requests_dropped"]


def _port(running: app.Running) -> int:
    return running.addresses[0][1]


async def _send(
    port: int, secret: bytes, count: int, *, message_authenticator: bool = True
) -> None:
    """Send ``count`` Access-Requests signed with ``secret`` from one socket."""
    async with RadiusClient(LOOPBACK, port, secret) as nas:
        for _ in range(count):
            data, _, _ = nas.build_request(
                USER, password=PASSWORD, message_authenticator=message_authenticator
            )
            nas.send_raw(data)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[app.Running]:
    """The in-process proxy with the test NAS (127.0.0.0/8, the test secret)."""
    async with proxy.in_process(proxy.write_config(tmp_path)) as running_:
        yield running_


class TestWrongSecret:
    async def test_wrong_secret_warns_once_with_count_and_hint(self, running: app.Running) -> None:
        """Five packets signed with a wrong secret: one warning naming the client, count 1, hint."""
        server = running.servers[0]
        with capture_logs() as captured:
            await _send(_port(running), WRONG_SECRET, 5)
            await proxy.until(
                lambda: server.counters["drop:bad_message_authenticator"] == 5, "five drops"
            )
        warnings = _warnings(captured)
        assert len(warnings) == 1
        warning = warnings[0]
        assert warning["log_level"] == "warning"
        assert warning["reason"] == "bad_message_authenticator"
        assert warning["client"] == "nas"
        assert warning["src"] == "127.0.0.1"
        assert warning["count"] == 1
        assert warning["hint"] == "check the shared secret"

    async def test_each_packet_stays_a_debug_line(self, running: app.Running) -> None:
        """The per-packet detail is still there, at DEBUG, one line per dropped datagram."""
        server = running.servers[0]
        with capture_logs() as captured:
            await _send(_port(running), WRONG_SECRET, 3)
            await proxy.until(
                lambda: server.counters["drop:bad_message_authenticator"] == 3, "three drops"
            )
        per_packet = [e for e in captured if e["event"] == "request_dropped"]
        assert [(e["log_level"], e["reason"]) for e in per_packet] == [
            ("debug", "bad_message_authenticator")
        ] * 3

    async def test_drops_held_back_are_reported_at_stop(self, tmp_path: Path) -> None:
        """At stop a last warning carries the drops the limit held back: the counts add up."""
        with capture_logs() as captured:
            async with proxy.in_process(proxy.write_config(tmp_path)) as running:
                server = running.servers[0]
                await _send(_port(running), WRONG_SECRET, 5)
                await proxy.until(
                    lambda: server.counters["drop:bad_message_authenticator"] == 5, "five drops"
                )
        counts = [(w["client"], w["count"]) for w in _warnings(captured)]
        assert counts == [("nas", 1), ("nas", 4)]

    async def test_lines_hold_no_secret_and_no_packet_bytes(self, tmp_path: Path) -> None:
        """Rendered as JSON, neither secret, password nor any packet byte appears in the lines."""
        buffer = io.StringIO()
        logs.configure(level="debug", fmt="json", stream=buffer, cache=False)
        sent: list[bytes] = []
        try:
            async with proxy.in_process(proxy.write_config(tmp_path)) as running:
                server = running.servers[0]
                async with RadiusClient(LOOPBACK, _port(running), WRONG_SECRET) as nas:
                    for _ in range(3):
                        data, _, _ = nas.build_request(USER, password=PASSWORD)
                        sent.append(data)
                        nas.send_raw(data)
                    await proxy.until(
                        lambda: server.counters["drop:bad_message_authenticator"] == 3,
                        "three drops",
                    )
        finally:
            structlog.reset_defaults()
        text = buffer.getvalue()
        lines = [json.loads(line) for line in text.splitlines()]
        assert any(line["event"] == "requests_dropped" for line in lines)
        forbidden = [SECRET, WRONG_SECRET.decode(), PASSWORD.decode()]
        for data in sent:
            forbidden += [data.hex(), data[4:20].hex(), data[-16:].hex(), repr(data)[2:40]]
        for value in forbidden:
            assert value not in text, value


class TestOtherWarnedDrops:
    async def test_unknown_client_warns_with_source_address(self, tmp_path: Path) -> None:
        """A source no client covers warns with ``src`` (no client name) and an ipaddr hint."""
        cfg = proxy.write_config(tmp_path)
        text = cfg.path.read_text().replace('ipaddr = ["127.0.0.0/8"]', 'ipaddr = ["127.0.0.2/32"]')
        cfg.path.write_text(text)
        with capture_logs() as captured:
            async with proxy.in_process(cfg) as running:
                server = running.servers[0]
                await _send(_port(running), SECRET.encode(), 2)
                await proxy.until(lambda: server.counters["drop:unknown_client"] == 2, "drops")
                warnings = _warnings(captured)
        assert len(warnings) == 1
        assert warnings[0]["reason"] == "unknown_client"
        assert warnings[0]["src"] == "127.0.0.1"
        assert "client" not in warnings[0]
        assert warnings[0]["count"] == 1
        assert "ipaddr" in warnings[0]["hint"]

    async def test_missing_message_authenticator_warns_when_required(self, tmp_path: Path) -> None:
        """require_message_authenticator = yes and an unsigned request: a warning for the NAS."""
        cfg = proxy.write_config(tmp_path, client='require_message_authenticator = "yes"')
        with capture_logs() as captured:
            async with proxy.in_process(cfg) as running:
                server = running.servers[0]
                await _send(_port(running), SECRET.encode(), 1, message_authenticator=False)
                await proxy.until(
                    lambda: server.counters["drop:missing_message_authenticator"] == 1, "drop"
                )
        warnings = _warnings(captured)
        assert [(w["reason"], w["client"], w["count"]) for w in warnings] == [
            ("missing_message_authenticator", "nas", 1)
        ]
        assert "Message-Authenticator" in warnings[0]["hint"]
        assert "shared secret" not in warnings[0]["hint"]

    async def test_malformed_datagram_gives_no_warning(self, running: app.Running) -> None:
        """Garbage is not a configuration problem: a DEBUG line only."""
        server = running.servers[0]
        with capture_logs() as captured:
            async with RadiusClient(LOOPBACK, _port(running), SECRET.encode()) as nas:
                nas.send_raw(b"\x01\x02\x00\x50" + b"\x00" * 10)
            await proxy.until(lambda: server.counters["drop:malformed"] == 1, "the drop")
        assert _warnings(captured) == []
        assert [e["reason"] for e in captured if e["event"] == "request_dropped"] == ["malformed"]


class TestRateLimit:
    """A listener of its own on an injected clock, built on the in-process proxy's stores."""

    @pytest.fixture
    async def lab(
        self, running: app.Running, clock: FakeClock
    ) -> AsyncIterator[tuple[UdpListener, int]]:
        """A listener for client ``lab`` (127.0.0.1/32 only), warning every 10 s of ``clock``."""
        clients = ClientTable(
            [
                Client(
                    name="lab",
                    networks=(ipaddress.ip_network("127.0.0.1/32"),),
                    secret=SECRET.encode(),
                )
            ]
        )
        endpoint = Endpoint(clients)
        handler = RequestHandler(
            endpoint=endpoint,
            engine=Logins(users=running.enrolments, store=running.store, clock=clock).engine,
            profiles={},
            replies=running.store,
            clock=clock,
            node="lab",
        )
        listener = UdpListener(
            endpoint=endpoint, handler=handler, clients=clients, clock=clock, warn_interval=10.0
        )
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: listener, local_addr=(LOOPBACK, 0)
        )
        try:
            yield listener, int(transport.get_extra_info("sockname")[1])
        finally:
            await listener.close()

    async def test_next_line_after_the_interval_carries_the_drops_held_back(
        self, lab: tuple[UdpListener, int], clock: FakeClock
    ) -> None:
        """Within 10 s one line; the first drop after them gets a line counting all since."""
        listener, port = lab

        async def drops(total: int) -> None:
            await proxy.until(
                lambda: listener.counters["drop:bad_message_authenticator"] == total, "drops"
            )

        with capture_logs() as captured:
            await _send(port, WRONG_SECRET, 3)
            await drops(3)
            clock.advance(9.9)
            await _send(port, WRONG_SECRET, 1)
            await drops(4)
            assert [w["count"] for w in _warnings(captured)] == [1]
            clock.advance(0.1)
            await _send(port, WRONG_SECRET, 1)
            await drops(5)
            clock.advance(5.0)
            await _send(port, WRONG_SECRET, 1)
            await drops(6)
        assert [(w["client"], w["count"]) for w in _warnings(captured)] == [("lab", 1), ("lab", 4)]

    async def test_each_source_and_reason_has_its_own_limit(
        self, lab: tuple[UdpListener, int]
    ) -> None:
        """A wrong secret from the client does not hide an unknown source, nor the reverse."""
        listener, port = lab
        with capture_logs() as captured:
            await _send(port, WRONG_SECRET, 2)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.2", 0))
                other.setblocking(False)
                loop = asyncio.get_running_loop()
                for _ in range(2):
                    await loop.sock_sendto(
                        other, b"\x01\x02\x00\x14" + b"\x00" * 16, (LOOPBACK, port)
                    )
                await proxy.until(
                    lambda: (
                        listener.counters["drop:unknown_client"] == 2
                        and listener.counters["drop:bad_message_authenticator"] == 2
                    ),
                    "four drops",
                )
        by_reason = {w["reason"]: w for w in _warnings(captured)}
        assert len(_warnings(captured)) == 2
        assert by_reason["bad_message_authenticator"]["client"] == "lab"
        assert by_reason["unknown_client"]["src"] == "127.0.0.2"
        assert "client" not in by_reason["unknown_client"]
