"""UpstreamRadiusAuthenticator against in-process home servers built on our codec.

The fail-over state machine (HomeServerPool) runs on explicit fake time. The adapter talks UDP
on loopback to :class:`_HomeServer` responders, which can answer unsigned, with the wrong
secret, with an unexpected code, or not at all. The same adapter against a real FreeRADIUS is
in ``tests/interop/test_freeradius_upstream.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import pytest
import structlog

from mfa_radius.adapters.upstream_radius import (
    DEFAULT_FORWARD,
    HomeServer,
    HomeServerPool,
    HomeServerStatus,
    UpstreamRadiusAuthenticator,
)
from mfa_radius.core.model import (
    AuthAttempt,
    PrimaryAccept,
    PrimaryChallenge,
    PrimaryReject,
    RejectReason,
)
from mfa_radius.errors import PrimaryUnavailable
from mfa_radius.radius import codec
from mfa_radius.radius.packet import Attribute, AttrType, Code, RadiusPacket
from tests.support.clock import FakeClock
from tests.support.ports import LOOPBACK, free_udp_port

SECRET = b"home-secret-one"
OTHER_SECRET = b"home-secret-two"
PASSWORD = b"right-password"
CISCO_VSA = b"\x00\x00\x00\x09" + bytes((1, 19)) + b"shell:priv-lvl=15"
GRANTED: tuple[Attribute, ...] = (
    (AttrType.CLASS, b"vpn-class"),
    (AttrType.FILTER_ID, b"staff"),
    (AttrType.VENDOR_SPECIFIC, CISCO_VSA),
    (AttrType.SESSION_TIMEOUT, struct.pack("!I", 3600)),
)
NAS_ATTRIBUTES: tuple[Attribute, ...] = (
    (AttrType.USER_NAME, b"Alice@Example"),
    (AttrType.NAS_IP_ADDRESS, bytes((192, 0, 2, 1))),
    (AttrType.NAS_PORT, struct.pack("!I", 7)),
    (AttrType.CALLING_STATION_ID, b"198.51.100.9"),
    (AttrType.NAS_IDENTIFIER, b"vpn-gw-1"),
    (AttrType.PROXY_STATE, b"nas-proxy-state"),
    (AttrType.STATE, b"our-own-state"),
    (AttrType.FRAMED_IP_ADDRESS, bytes((10, 0, 0, 1))),
)


HANG_GUARD_S = 5.0
"""Deadline of a call that must end: many times every window it may wait, so never hit."""


def _attempt(attributes: tuple[Attribute, ...] = NAS_ATTRIBUTES) -> AuthAttempt:
    return AuthAttempt(
        username="alice",
        raw_username="Alice@Example",
        password=None,
        state=None,
        client="vpn",
        src_ip="192.0.2.1",
        request_attributes=attributes,
    )


def _unsigned_response(
    code: Code, identifier: int, request_auth: bytes, attributes: list[Attribute], secret: bytes
) -> bytes:
    """A reply without Message-Authenticator, as FreeRADIUS 3.2.1 sends by default."""
    body = b"".join(bytes((t, len(v) + 2)) + v for t, v in attributes)
    head = struct.pack("!BBH", code, identifier, 20 + len(body))
    return (
        head
        + hashlib.md5(head + request_auth + body + secret, usedforsecurity=False).digest()
        + body
    )


Answer = tuple[Code, list[Attribute]]


@dataclass
class _Received:
    packet: RadiusPacket
    password: bytes | None
    signed: bool | None
    source_port: int


@dataclass
class _HomeServer(asyncio.DatagramProtocol):
    """A home server on loopback: accepts PASSWORD (granting GRANTED), rejects the rest.

    Attributes:
        secret: the shared secret it checks requests with.
        reply_secret: the secret it signs replies with (a different one fakes a wrong secret).
        sign: add Message-Authenticator to replies.
        silent: receive but never answer.
        answer: replaces the accept/reject decision when set.
        hold: keep replies back until this many requests have arrived, then send them all.
        received: every request, decoded, with its revealed password.
    """

    secret: bytes = SECRET
    reply_secret: bytes | None = None
    sign: bool = True
    silent: bool = False
    answer: Callable[[RadiusPacket, bytes | None], Answer] | None = None
    hold: int = 0
    received: list[_Received] = field(default_factory=list)
    held: list[tuple[bytes, tuple[str | int, ...]]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        packet = codec.decode(data)
        hidden = packet.get(AttrType.USER_PASSWORD)
        password = (
            None
            if hidden is None
            else codec.unhide_password(hidden, self.secret, packet.authenticator)
        )
        signed = codec.verify_message_authenticator(data, self.secret)
        self.received.append(_Received(packet, password, signed, int(addr[1])))
        if self.silent or signed is not True:
            return
        code: Code
        attrs: list[Attribute]
        if packet.code is Code.STATUS_SERVER:
            code, attrs = Code.ACCESS_ACCEPT, []
        elif self.answer is not None:
            code, attrs = self.answer(packet, password)
        elif password == PASSWORD:
            code, attrs = Code.ACCESS_ACCEPT, list(GRANTED)
        else:
            code, attrs = Code.ACCESS_REJECT, []
        secret = self.reply_secret or self.secret
        if self.sign:
            reply = codec.encode_response(
                code, packet.identifier, packet.authenticator, attrs, secret
            )
        else:
            reply = _unsigned_response(code, packet.identifier, packet.authenticator, attrs, secret)
        assert self.transport is not None
        self.held.append((reply, addr))
        if len(self.received) >= self.hold:
            # In chunks, one loop turn apart, so the client's receive buffer never overflows.
            loop = asyncio.get_running_loop()
            for i in range(0, len(self.held), 32):
                loop.call_later(i / 3200, self._send, self.held[i : i + 32])
            self.held = []

    def _send(self, replies: list[tuple[bytes, tuple[str | int, ...]]]) -> None:
        assert self.transport is not None
        for reply, to in replies:
            self.transport.sendto(reply, to)


StartServer = Callable[..., Awaitable[tuple[_HomeServer, int]]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """A factory of loopback home servers (keyword arguments as _HomeServer's); all closed after."""
    transports: list[asyncio.BaseTransport] = []

    async def start(**kwargs: object) -> tuple[_HomeServer, int]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _HomeServer(**kwargs),  # type: ignore[arg-type]  # test-only passthrough
            local_addr=(LOOPBACK, 0),
        )
        transports.append(transport)
        return protocol, int(transport.get_extra_info("sockname")[1])

    yield start
    for transport in transports:
        transport.close()


def _home(name: str, port: int, secret: bytes = SECRET, **kwargs: float | bool) -> HomeServer:
    return HomeServer(name, LOOPBACK, port, secret=secret, **kwargs)  # type: ignore[arg-type]  # keyword passthrough


@pytest.fixture
async def make_upstream(
    clock: FakeClock,
) -> AsyncIterator[Callable[..., UpstreamRadiusAuthenticator]]:
    """A factory of authenticators on the fake clock; all closed after the test."""
    made: list[UpstreamRadiusAuthenticator] = []

    def make(servers: list[HomeServer], **kwargs: object) -> UpstreamRadiusAuthenticator:
        upstream = UpstreamRadiusAuthenticator(servers, clock=clock, **kwargs)  # type: ignore[arg-type]  # keyword passthrough
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.close()


# --- the pure state machine, on explicit fake time -------------------------------------------

T0 = 1000.0


def _pool(*names: str, status_check: bool = True) -> HomeServerPool:
    servers = [
        HomeServer(
            n,
            LOOPBACK,
            secret=SECRET,
            response_window=2.0,
            zombie_period=40.0,
            revive_interval=60.0,
            status_check=status_check,
        )
        for n in names
    ]
    return HomeServerPool(servers, T0)


def _names(servers: list[HomeServer]) -> list[str]:
    return [s.name for s in servers]


class TestHomeServerPool:
    def test_all_servers_start_alive_in_configured_order(self) -> None:
        """A new pool tries every server in the configured order."""
        pool = _pool("a", "b", "c")
        assert _names(pool.order(T0)) == ["a", "b", "c"]
        assert pool.status(T0) == [("a", "alive"), ("b", "alive"), ("c", "alive")]

    def test_timeout_makes_server_zombie_and_tried_last(self) -> None:
        """A missed response window makes the server a zombie, tried after the alive ones."""
        pool = _pool("a", "b", "c")
        changes = pool.timed_out("a", sent=T0, now=T0 + 2)
        assert changes == [("a", HomeServerStatus.ZOMBIE)]
        assert _names(pool.order(T0 + 2)) == ["b", "c", "a"]

    def test_zombie_becomes_dead_after_zombie_period(self) -> None:
        """A zombie silent for zombie_period is dead and no longer tried."""
        pool = _pool("a", "b")
        pool.timed_out("a", sent=T0, now=T0 + 2)
        assert pool.tick(T0 + 41) == []
        assert pool.tick(T0 + 42) == [("a", HomeServerStatus.DEAD)]
        assert _names(pool.order(T0 + 42)) == ["b"]

    def test_zombie_period_counts_from_the_first_miss(self) -> None:
        """Later misses of a zombie do not postpone its death."""
        pool = _pool("a", "b")
        pool.timed_out("a", sent=T0, now=T0 + 2)
        assert pool.timed_out("a", sent=T0 + 30, now=T0 + 32) == []
        assert pool.status(T0 + 42)[0] == ("a", "dead")

    def test_all_dead_are_still_tried_in_order(self) -> None:
        """When every server is dead, all are tried in configured order."""
        pool = _pool("a", "b")
        pool.timed_out("b", sent=T0, now=T0)
        pool.timed_out("a", sent=T0, now=T0 + 1)
        assert [st for _, st in pool.status(T0 + 45)] == ["dead", "dead"]
        assert _names(pool.order(T0 + 45)) == ["a", "b"]

    def test_dead_server_revives_after_revive_interval(self) -> None:
        """A dead server is alive again revive_interval after it died."""
        pool = _pool("a", "b")
        pool.timed_out("a", sent=T0, now=T0)
        pool.tick(T0 + 40)  # dead at T0 + 40
        assert pool.tick(T0 + 99) == []
        assert pool.tick(T0 + 100) == [("a", HomeServerStatus.ALIVE)]
        assert _names(pool.order(T0 + 100)) == ["a", "b"]

    @pytest.mark.parametrize("dead", [False, True], ids=["zombie", "dead"])
    def test_answer_makes_server_alive_at_once(self, dead: bool) -> None:
        """A verified reply (to a request or a probe) revives a zombie or dead server."""
        pool = _pool("a", "b")
        pool.timed_out("a", sent=T0, now=T0)
        now = T0 + (41 if dead else 1)
        pool.tick(now)
        assert pool.answered("a", now) == [("a", HomeServerStatus.ALIVE)]
        assert _names(pool.order(now)) == ["a", "b"]

    def test_answer_from_alive_server_changes_nothing(self) -> None:
        """An answer from an alive server reports no change."""
        assert _pool("a").answered("a", T0 + 1) == []

    def test_timeout_does_not_demote_server_that_answered_since(self) -> None:
        """A lost request does not make a zombie of a server that answered a later request."""
        pool = _pool("a", "b")
        pool.answered("a", T0 + 1)
        assert pool.timed_out("a", sent=T0, now=T0 + 2) == []
        assert pool.status(T0 + 2)[0] == ("a", "alive")

    def test_probes_go_to_zombie_and_dead_servers_only(self) -> None:
        """Status-Server probes target the servers that are not alive."""
        pool = _pool("a", "b", "c")
        pool.timed_out("a", sent=T0, now=T0)
        pool.timed_out("c", sent=T0 + 20, now=T0 + 20)
        assert _names(pool.to_probe(T0 + 41)) == ["a", "c"]
        assert pool.status(T0 + 41) == [("a", "dead"), ("b", "alive"), ("c", "zombie")]

    def test_servers_without_status_check_are_not_probed(self) -> None:
        """status_check = false: zombies wait for zombie_period and revive_interval instead."""
        pool = _pool("a", status_check=False)
        pool.timed_out("a", sent=T0, now=T0)
        assert pool.to_probe(T0 + 1) == []

    @pytest.mark.parametrize(
        "names",
        [(), ("a", "a")],
        ids=["empty", "duplicate"],
    )
    def test_refuses_empty_or_duplicate_server_lists(self, names: tuple[str, ...]) -> None:
        """A pool needs at least one server and unique names."""
        with pytest.raises(ValueError, match="home server"):
            _pool(*names)


class TestHomeServer:
    def test_repr_hides_secret(self) -> None:
        """The secret appears in no repr (and so in no log of a HomeServer)."""
        assert "home-secret" not in repr(HomeServer("a", LOOPBACK, secret=SECRET))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"secret": b""}, "secret"),
            ({"secret": SECRET, "port": 0}, "port"),
            ({"secret": SECRET, "response_window": 0.0}, "response_window"),
        ],
        ids=["empty-secret", "port-0", "window-0"],
    )
    def test_refuses_impossible_values(self, kwargs: dict[str, object], match: str) -> None:
        """Values no configuration should produce are refused at construction."""
        with pytest.raises(ValueError, match=match):
            HomeServer("a", LOOPBACK, **kwargs)  # type: ignore[arg-type]  # keyword passthrough


# --- the adapter on loopback -----------------------------------------------------------------


class TestRequest:
    async def test_sends_raw_user_name_forwarded_attributes_and_hidden_password(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """The request has MA first, the raw User-Name, the forwarded set, a hidden password."""
        server, port = await start_server()
        upstream = make_upstream([_home("one", port)])
        await upstream.verify(_attempt(), PASSWORD)
        [got] = server.received
        assert got.signed is True
        assert got.packet.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR
        assert got.password == PASSWORD
        assert got.packet.get(AttrType.USER_NAME) == b"Alice@Example"
        sent = [(t, v) for t, v in got.packet.attributes if t not in (1, 2, 80)]
        assert sent == [
            (AttrType.NAS_IP_ADDRESS, bytes((192, 0, 2, 1))),
            (AttrType.NAS_PORT, struct.pack("!I", 7)),
            (AttrType.CALLING_STATION_ID, b"198.51.100.9"),
            (AttrType.NAS_IDENTIFIER, b"vpn-gw-1"),
        ]

    async def test_sends_upstream_state_when_answering_its_challenge(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """upstream_state goes back as the only State; the NAS's State to us does not."""
        server, port = await start_server()
        upstream = make_upstream([_home("one", port)])
        await upstream.verify(_attempt(), b"1234", upstream_state=b"their-state")
        assert server.received[0].packet.get_all(AttrType.STATE) == [b"their-state"]

    def test_refuses_to_forward_attributes_it_sets_itself(self, clock: FakeClock) -> None:
        """Forwarding Proxy-State, State, passwords or MA is a configuration error."""
        with pytest.raises(ValueError, match=r"\[24, 33\]"):
            UpstreamRadiusAuthenticator(
                [_home("one", 1812)],
                clock=clock,
                forward_attributes=(*DEFAULT_FORWARD, AttrType.PROXY_STATE, AttrType.STATE),
            )

    async def test_rejects_overlong_password_without_asking(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """A password over 128 octets cannot be sent (RFC 2865 §5.2): bad_password, no request."""
        server, port = await start_server()
        upstream = make_upstream([_home("one", port)])
        result = await upstream.verify(_attempt(), b"x" * 129)
        assert result == PrimaryReject(RejectReason.BAD_PASSWORD)
        assert server.received == []

    async def test_many_concurrent_requests_get_their_own_replies(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """More than 256 requests in flight to one server each get their own answer."""
        server, port = await start_server(hold=300)
        upstream = make_upstream([_home("one", port, response_window=5.0)])
        passwords = [PASSWORD if i % 2 else b"wrong-%d" % i for i in range(300)]
        results = await asyncio.gather(*(upstream.verify(_attempt(), p) for p in passwords))
        assert [isinstance(r, PrimaryAccept) for r in results] == [p == PASSWORD for p in passwords]
        assert len(server.received) == 300
        assert len({r.source_port for r in server.received}) == 2  # 256 Identifiers per socket


class TestReply:
    async def test_accept_keeps_granted_attributes(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """Class, Filter-Id, a VSA and Session-Timeout are kept; the hop's own are not."""

        def answer(packet: RadiusPacket, password: bytes | None) -> Answer:
            return Code.ACCESS_ACCEPT, [
                *GRANTED,
                (AttrType.STATE, b"upstream-state"),
                (AttrType.PROXY_STATE, b"xx"),
                (AttrType.EAP_MESSAGE, b"\x03\x01\x00\x04"),
            ]

        _, port = await start_server(answer=answer)
        upstream = make_upstream([_home("one", port)])
        assert await upstream.verify(_attempt(), PASSWORD) == PrimaryAccept(
            attributes=GRANTED, upstream="one"
        )

    async def test_reply_filter_keeps_listed_types_and_whole_vsas(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """With reply_filter, only the listed types survive; a Vendor-Specific stays whole."""
        _, port = await start_server()
        upstream = make_upstream(
            [_home("one", port)], reply_filter={AttrType.CLASS, AttrType.VENDOR_SPECIFIC}
        )
        result = await upstream.verify(_attempt(), PASSWORD)
        assert result == PrimaryAccept(
            attributes=((AttrType.CLASS, b"vpn-class"), (AttrType.VENDOR_SPECIFIC, CISCO_VSA)),
            upstream="one",
        )

    async def test_reject_carries_reply_message(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """An Access-Reject is primary_rejected with its Reply-Messages joined in order."""

        def answer(packet: RadiusPacket, password: bytes | None) -> Answer:
            return Code.ACCESS_REJECT, [
                (AttrType.REPLY_MESSAGE, b"Password "),
                (AttrType.REPLY_MESSAGE, b"expired"),
            ]

        _, port = await start_server(answer=answer)
        upstream = make_upstream([_home("one", port)])
        result = await upstream.verify(_attempt(), PASSWORD)
        assert result == PrimaryReject(
            RejectReason.PRIMARY_REJECTED, "Password expired", upstream="one"
        )

    async def test_reject_without_message_has_none(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """An Access-Reject without Reply-Message gives message None."""
        _, port = await start_server()
        upstream = make_upstream([_home("one", port)])
        assert await upstream.verify(_attempt(), b"wrong") == PrimaryReject(
            RejectReason.PRIMARY_REJECTED, None, upstream="one"
        )

    async def test_challenge_becomes_primary_challenge(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """An Access-Challenge gives its State and Reply-Message to relay."""

        def answer(packet: RadiusPacket, password: bytes | None) -> Answer:
            return Code.ACCESS_CHALLENGE, [
                (AttrType.REPLY_MESSAGE, b"Enter PIN"),
                (AttrType.STATE, b"\x01\x02"),
            ]

        _, port = await start_server(answer=answer)
        upstream = make_upstream([_home("one", port)])
        assert await upstream.verify(_attempt(), PASSWORD) == PrimaryChallenge(
            state=b"\x01\x02", prompt="Enter PIN", upstream="one"
        )

    async def test_challenge_without_state_is_a_reject(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """A challenge without State cannot be relayed and answered: primary_rejected, logged."""

        def answer(packet: RadiusPacket, password: bytes | None) -> Answer:
            return Code.ACCESS_CHALLENGE, [(AttrType.REPLY_MESSAGE, b"Enter PIN")]

        _, port = await start_server(answer=answer)
        upstream = make_upstream([_home("one", port)])
        with structlog.testing.capture_logs() as logs:
            result = await upstream.verify(_attempt(), PASSWORD)
        assert result == PrimaryReject(RejectReason.PRIMARY_REJECTED, "Enter PIN", upstream="one")
        assert [e["event"] for e in logs] == ["upstream_challenge_without_state"]

    async def test_names_the_answering_server_for_the_audit_line(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """The name of the server that answered travels with the result (audit ``upstream``)."""
        _, port = await start_server()
        upstream = make_upstream([_home("nps-1", port)])
        result = await upstream.verify(_attempt(), PASSWORD)
        assert result.upstream == "nps-1"


class TestReplyVerification:
    async def test_unsigned_reply_is_ignored_when_message_authenticator_required(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """A reply without MA counts as no answer and is logged as dropped."""
        _, port = await start_server(sign=False)
        upstream = make_upstream([_home("one", port, response_window=0.3)])
        with (
            structlog.testing.capture_logs() as logs,
            pytest.raises(PrimaryUnavailable, match="no home server answered"),
        ):
            await upstream.verify(_attempt(), PASSWORD)
        drops = [e for e in logs if e["event"] == "upstream_reply_dropped"]
        assert drops == [
            {
                "event": "upstream_reply_dropped",
                "upstream": "one",
                "reason": "missing_message_authenticator",
                "log_level": "warning",
            }
        ]

    async def test_unsigned_reply_is_taken_when_not_required(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """require_message_authenticator = false accepts a reply verified by its authenticator."""
        _, port = await start_server(sign=False)
        upstream = make_upstream([_home("one", port, require_message_authenticator=False)])
        assert isinstance(await upstream.verify(_attempt(), PASSWORD), PrimaryAccept)

    async def test_reply_with_wrong_secret_is_ignored(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """A reply whose Response Authenticator fails is no answer (a wrong secret looks so)."""
        _, port = await start_server(reply_secret=b"some-other-secret")
        upstream = make_upstream([_home("one", port, response_window=0.3)])
        with structlog.testing.capture_logs() as logs, pytest.raises(PrimaryUnavailable):
            await upstream.verify(_attempt(), PASSWORD)
        reasons = [e["reason"] for e in logs if e["event"] == "upstream_reply_dropped"]
        assert reasons == ["bad_response_authenticator"]

    async def test_reply_of_unexpected_code_is_ignored(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """An Accounting-Response to an Access-Request is not an answer."""

        def answer(packet: RadiusPacket, password: bytes | None) -> Answer:
            return Code.ACCOUNTING_RESPONSE, []

        _, port = await start_server(answer=answer)
        upstream = make_upstream([_home("one", port, response_window=0.3)])
        with pytest.raises(PrimaryUnavailable):
            await upstream.verify(_attempt(), PASSWORD)


class TestFailover:
    async def test_silent_server_fails_over_to_next_with_its_secret(
        self,
        start_server: StartServer,
        make_upstream: Callable[..., UpstreamRadiusAuthenticator],
    ) -> None:
        """After the first server's window the request goes to the second, under its secret."""
        silent, port1 = await start_server(silent=True)
        second, port2 = await start_server(secret=OTHER_SECRET)
        upstream = make_upstream(
            [
                _home("one", port1, response_window=0.3),
                _home("two", port2, OTHER_SECRET, response_window=0.3),
            ]
        )
        async with asyncio.timeout(HANG_GUARD_S):
            result = await upstream.verify(_attempt(), PASSWORD)
        assert isinstance(result, PrimaryAccept)
        assert result.upstream == "two"
        assert len(silent.received) == 1
        assert second.received[0].password == PASSWORD
        assert upstream.status() == [("one", "zombie"), ("two", "alive")]

    async def test_zombie_is_tried_after_alive_servers(
        self,
        start_server: StartServer,
        make_upstream: Callable[..., UpstreamRadiusAuthenticator],
    ) -> None:
        """Once a zombie, the silent server is not asked first any more."""
        silent, port1 = await start_server(silent=True)
        _, port2 = await start_server()
        upstream = make_upstream(
            [_home("one", port1, response_window=0.3), _home("two", port2, response_window=0.3)]
        )
        await upstream.verify(_attempt(), PASSWORD)
        async with asyncio.timeout(HANG_GUARD_S):
            assert isinstance(await upstream.verify(_attempt(), PASSWORD), PrimaryAccept)
        assert len(silent.received) == 1  # the zombie was not asked again

    async def test_all_silent_raises_primary_unavailable_within_the_windows(
        self,
        start_server: StartServer,
        make_upstream: Callable[..., UpstreamRadiusAuthenticator],
    ) -> None:
        """No server answers: PrimaryUnavailable after the summed windows, without secrets."""
        _, port1 = await start_server(silent=True)
        upstream = make_upstream(
            [
                _home("one", port1, response_window=0.2),
                _home("two", free_udp_port(), response_window=0.2),
            ]
        )
        assert upstream.max_wait == pytest.approx(0.4)
        with pytest.raises(PrimaryUnavailable) as info:
            async with asyncio.timeout(HANG_GUARD_S):
                await upstream.verify(_attempt(), PASSWORD)
        assert info.value.backend == "upstream"
        assert "secret" not in str(info.value)
        assert upstream.status() == [("one", "zombie"), ("two", "zombie")]

    async def test_probe_revives_zombie(
        self,
        start_server: StartServer,
        make_upstream: Callable[..., UpstreamRadiusAuthenticator],
    ) -> None:
        """The Status-Server prober brings a zombie back as soon as it answers."""
        server, port = await start_server(silent=True)
        upstream = make_upstream([_home("one", port, response_window=0.2)], probe_interval=0.05)
        await upstream.start()
        with pytest.raises(PrimaryUnavailable):
            await upstream.verify(_attempt(), PASSWORD)
        assert upstream.status() == [("one", "zombie")]
        server.silent = False
        for _ in range(100):
            if upstream.status() == [("one", "alive")]:
                break
            await asyncio.sleep(0.02)
        assert upstream.status() == [("one", "alive")]
        assert any(r.packet.code is Code.STATUS_SERVER and r.signed for r in server.received)


class TestCheck:
    async def test_check_passes_when_every_server_answers(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """check() sends a signed Status-Server to each server."""
        server, port = await start_server()
        upstream = make_upstream([_home("one", port)])
        await upstream.check()
        assert [r.packet.code for r in server.received] == [Code.STATUS_SERVER]

    async def test_check_names_silent_servers(
        self, start_server: StartServer, make_upstream: Callable[..., UpstreamRadiusAuthenticator]
    ) -> None:
        """check() raises PrimaryUnavailable naming each server that did not answer."""
        _, port = await start_server()
        upstream = make_upstream(
            [
                _home("one", port),
                _home("two", free_udp_port(), response_window=0.2),
                _home("three", free_udp_port(), response_window=0.2),
                _home("four", free_udp_port(), response_window=0.2, status_check=False),
            ]
        )
        with pytest.raises(PrimaryUnavailable, match=r"from two, three$"):
            await upstream.check()
