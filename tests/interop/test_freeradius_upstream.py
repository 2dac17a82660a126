"""UpstreamRadiusAuthenticator against a real FreeRADIUS 3 home server on loopback.

FreeRADIUS checks our requests (its client entry requires Message-Authenticator, and it reveals
User-Password with the shared secret, RFC 2865 §5.2) and we check its replies (Response
Authenticator, RFC 2865 §3, and Message-Authenticator, RFC 3579 §3.2). The raddb and the facts
found about FreeRADIUS 3.2.1 are in ``tests/support/freeradius.py``. Outages are real: a port
nobody listens on, and the server stopped and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import structlog

from mfa_radius.adapters.upstream_radius import HomeServer, UpstreamRadiusAuthenticator
from mfa_radius.core.model import (
    AuthAttempt,
    PrimaryAccept,
    PrimaryChallenge,
    PrimaryReject,
    RejectReason,
)
from mfa_radius.errors import PrimaryUnavailable
from mfa_radius.radius.packet import Attribute, AttrType
from tests.support.clock import FakeClock
from tests.support.freeradius import CAROL_STATE, FreeRadiusServer
from tests.support.ports import LOOPBACK, free_udp_port

pytestmark = pytest.mark.interop

WINDOW = 0.3
"""Response window of the home servers in these tests (seconds)."""

HANG_GUARD_S = 5.0
"""Deadline of a verify() that must end: many times the windows it may wait, so never hit."""

CISCO_AVPAIR = b"\x00\x00\x00\x09" + bytes((1, 19)) + b"shell:priv-lvl=15"
"""Cisco-AVPair (vendor 9, type 1) as FreeRADIUS encodes it (RFC 2865 §5.26 layout)."""


def _attempt(user: str, attributes: tuple[Attribute, ...] = ()) -> AuthAttempt:
    return AuthAttempt(
        username=user,
        raw_username=user,
        password=None,
        state=None,
        client="vpn",
        src_ip="192.0.2.1",
        request_attributes=((AttrType.USER_NAME, user.encode()), *attributes),
    )


def _home(fr: FreeRadiusServer, name: str = "freeradius", **kwargs: float | bool) -> HomeServer:
    return HomeServer(
        name,
        fr.host,
        fr.port,
        secret=fr.secret_bytes,
        response_window=WINDOW,
        **kwargs,  # type: ignore[arg-type]  # keyword passthrough
    )


def _closed(name: str = "closed") -> HomeServer:
    """A home server on a port nobody listens on."""
    return HomeServer(name, LOOPBACK, free_udp_port(), secret=b"whatever", response_window=WINDOW)


@pytest.fixture
def freeradius(tmp_path: Path) -> Iterator[FreeRadiusServer]:
    """A FreeRADIUS that signs its replies with Message-Authenticator; stopped after."""
    with FreeRadiusServer(tmp_path / "raddb") as server:
        yield server


@pytest.fixture
def unsigned_freeradius(tmp_path: Path) -> Iterator[FreeRadiusServer]:
    """A FreeRADIUS as 3.2.1 ships: replies without Message-Authenticator; stopped after."""
    with FreeRadiusServer(tmp_path / "raddb-unsigned", sign_replies=False) as server:
        yield server


@pytest.fixture
async def make_upstream(
    clock: FakeClock,
) -> AsyncIterator[Callable[..., UpstreamRadiusAuthenticator]]:
    """A factory of authenticators on the fake clock; all closed after the test."""
    made: list[UpstreamRadiusAuthenticator] = []

    def make(servers: list[HomeServer], probe_interval: float = 5.0) -> UpstreamRadiusAuthenticator:
        upstream = UpstreamRadiusAuthenticator(servers, clock=clock, probe_interval=probe_interval)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.close()


MakeUpstream = Callable[..., UpstreamRadiusAuthenticator]


class TestAnswers:
    async def test_accept_keeps_authorization_attributes(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """alice's Class, Filter-Id, Cisco-AVPair (a VSA) and Session-Timeout are kept."""
        upstream = make_upstream([_home(freeradius)])
        result = await upstream.verify(_attempt("alice"), b"alice-pw")
        assert result == PrimaryAccept(
            attributes=(
                (AttrType.CLASS, b"vpn-class"),
                (AttrType.FILTER_ID, b"staff"),
                (AttrType.VENDOR_SPECIFIC, CISCO_AVPAIR),
                (AttrType.SESSION_TIMEOUT, struct.pack("!I", 3600)),
            ),
            upstream="freeradius",
        )

    async def test_wrong_password_is_rejected_with_reply_message(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """A wrong password is primary_rejected with the server's Reply-Message."""
        upstream = make_upstream([_home(freeradius)])
        result = await upstream.verify(_attempt("bob"), b"not-bob-pw")
        assert result == PrimaryReject(
            RejectReason.PRIMARY_REJECTED, "Access denied", upstream="freeradius"
        )

    async def test_unknown_user_is_rejected(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """A user the home server does not know is primary_rejected as well."""
        upstream = make_upstream([_home(freeradius)])
        result = await upstream.verify(_attempt("mallory"), b"anything")
        assert result == PrimaryReject(
            RejectReason.PRIMARY_REJECTED, "Access denied", upstream="freeradius"
        )

    async def test_accept_without_granted_attributes(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """bob's right password is an accept with no attributes."""
        upstream = make_upstream([_home(freeradius)])
        assert await upstream.verify(_attempt("bob"), b"bob-pw") == PrimaryAccept(
            upstream="freeradius"
        )

    async def test_upstream_challenge_then_answer_with_its_state(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """carol gets FreeRADIUS' own challenge; the PIN sent with its State is accepted."""
        upstream = make_upstream([_home(freeradius)])
        first = await upstream.verify(_attempt("carol"), b"carol-pw")
        assert first == PrimaryChallenge(
            state=CAROL_STATE, prompt="Enter PIN", upstream="freeradius"
        )
        second = await upstream.verify(_attempt("carol"), b"4321", upstream_state=first.state)
        assert second == PrimaryAccept(upstream="freeradius")

    async def test_wrong_answer_to_upstream_challenge_is_rejected(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """A wrong PIN with the upstream's State is primary_rejected."""
        upstream = make_upstream([_home(freeradius)])
        result = await upstream.verify(_attempt("carol"), b"0000", upstream_state=CAROL_STATE)
        assert result == PrimaryReject(
            RejectReason.PRIMARY_REJECTED, "Access denied", upstream="freeradius"
        )

    async def test_forwarded_attributes_reach_the_home_server(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """NAS attributes in the forward list arrive upstream; Proxy-State does not."""
        upstream = make_upstream([_home(freeradius)])
        attributes: tuple[Attribute, ...] = (
            (AttrType.NAS_IDENTIFIER, b"vpn-gw-1"),
            (AttrType.CALLING_STATION_ID, b"198.51.100.9"),
            (AttrType.NAS_PORT, struct.pack("!I", 7)),
            (AttrType.PROXY_STATE, b"nas-proxy"),
        )
        result = await upstream.verify(_attempt("dave", attributes), b"dave-pw")
        assert result == PrimaryAccept(
            attributes=(
                (
                    AttrType.REPLY_MESSAGE,
                    b"nas-id=vpn-gw-1 calling=198.51.100.9 port=7 called= proxy-state=",
                ),
            ),
            upstream="freeradius",
        )


class TestMessageAuthenticator:
    async def test_unsigned_replies_are_no_answer_when_required(
        self, unsigned_freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """FreeRADIUS 3.2.1's unsigned replies are dropped and logged when MA is required."""
        upstream = make_upstream([_home(unsigned_freeradius)])
        with (
            structlog.testing.capture_logs() as logs,
            pytest.raises(PrimaryUnavailable, match="no home server answered"),
        ):
            await upstream.verify(_attempt("alice"), b"alice-pw")
        reasons = [e["reason"] for e in logs if e["event"] == "upstream_reply_dropped"]
        assert reasons == ["missing_message_authenticator"]

    async def test_unsigned_replies_are_taken_when_not_required(
        self, unsigned_freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """require_message_authenticator = false talks to an unsigned FreeRADIUS."""
        upstream = make_upstream([_home(unsigned_freeradius, require_message_authenticator=False)])
        result = await upstream.verify(_attempt("alice"), b"alice-pw")
        assert isinstance(result, PrimaryAccept)
        assert (AttrType.CLASS, b"vpn-class") in result.attributes


class TestLiveness:
    async def test_check_passes_on_status_server_answer(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """FreeRADIUS answers Status-Server on its auth port (status_server = yes)."""
        upstream = make_upstream([_home(freeradius)])
        await upstream.check()
        assert "Status-Server" in freeradius.log_text()

    async def test_check_names_stopped_server(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """check() names a home server that does not answer Status-Server."""
        upstream = make_upstream([_home(freeradius, "fr1")])
        freeradius.stop()
        with pytest.raises(PrimaryUnavailable, match=r"Status-Server from fr1$"):
            await upstream.check()

    async def test_fails_over_from_closed_port_within_the_window(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """First server silent: FreeRADIUS answers after one response window; first is zombie.

        The first server is zombie only because its window ran out without an answer; the
        deadline is a hang guard, far above the two windows.
        """
        upstream = make_upstream([_closed("nps"), _home(freeradius)])
        async with asyncio.timeout(HANG_GUARD_S):
            result = await upstream.verify(_attempt("alice"), b"alice-pw")
        assert isinstance(result, PrimaryAccept)
        assert result.upstream == "freeradius"
        assert upstream.status() == [("nps", "zombie"), ("freeradius", "alive")]

    async def test_all_down_is_primary_unavailable_within_the_windows(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream
    ) -> None:
        """Both servers down: PrimaryUnavailable after the two windows, not later."""
        upstream = make_upstream([_home(freeradius), _closed()])
        freeradius.stop()
        with pytest.raises(PrimaryUnavailable, match="no home server answered"):
            async with asyncio.timeout(HANG_GUARD_S):
                await upstream.verify(_attempt("alice"), b"alice-pw")

    async def test_restarted_server_is_revived_by_status_server_probe(
        self, freeradius: FreeRadiusServer, make_upstream: MakeUpstream, clock: FakeClock
    ) -> None:
        """Stopped: zombie, then dead; restarted on its port, a probe makes it alive again."""
        server = _home(freeradius, zombie_period=10.0, revive_interval=600.0)
        upstream = make_upstream([server], probe_interval=0.05)
        await upstream.start()
        freeradius.stop()
        with pytest.raises(PrimaryUnavailable):
            await upstream.verify(_attempt("alice"), b"alice-pw")
        assert upstream.status() == [("freeradius", "zombie")]
        clock.advance(10.0)
        assert upstream.status() == [("freeradius", "dead")]
        await asyncio.to_thread(freeradius.start)
        for _ in range(100):
            if upstream.status() == [("freeradius", "alive")]:
                break
            await asyncio.sleep(0.02)
        assert upstream.status() == [("freeradius", "alive")]
        assert isinstance(await upstream.verify(_attempt("alice"), b"alice-pw"), PrimaryAccept)
