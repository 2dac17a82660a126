"""End to end over UDP loopback: a real proxy built by app.running, a NAS built on our codec."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from mfa_radius import app, logs
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.core import otp
from mfa_radius.radius import codec
from mfa_radius.radius.packet import AttrType, Code
from tests.support import proxy
from tests.support.proxy import SECRET, TOTP_SECRET

PASSWORD = "alice-password-1"
NO_PRIMARY = 'primary = "none"'


def code_now(offset_steps: int = 0) -> str:
    return otp.hotp(TOTP_SECRET, otp.timecode(time.time(), 30) + offset_steps)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[app.Running]:
    cfg = proxy.write_config(tmp_path, profile='primary = "local"')
    async with proxy.in_process(cfg) as proxy_:
        await proxy.enrol(proxy_, "alice", password=PASSWORD)
        yield proxy_


def _port(running: app.Running) -> int:
    return running.addresses[0][1]


def _user(name: str = "alice") -> list[tuple[int, bytes]]:
    return [(AttrType.USER_NAME, name.encode())]


class TestLogin:
    async def test_full_challenge_login_is_accepted(self, running: app.Running) -> None:
        """Password, Access-Challenge with State and prompt, code, Access-Accept."""
        prompts: list[str] = []

        def answer(prompt: str) -> str:
            prompts.append(prompt)
            return code_now()

        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            result = await nas.login("alice", PASSWORD.encode(), answer)
        assert result.outcome == "accept"
        assert prompts == ["Enter the 6-digit code from your authenticator app"]

    async def test_wrong_password_is_rejected_without_challenge(self, running: app.Running) -> None:
        """A wrong password gets Access-Reject at once."""
        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            reply = await nas.request(_user(), password=b"wrong-password")
        assert reply.code is Code.ACCESS_REJECT
        assert reply.get(AttrType.STATE) is None

    async def test_every_reply_carries_message_authenticator_first(
        self, running: app.Running
    ) -> None:
        """Challenge, Accept and Reject all start with a valid Message-Authenticator."""
        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            challenge = await nas.request(_user(), password=PASSWORD.encode())
            state = challenge.get(AttrType.STATE)
            assert state is not None
            accept = await nas.request(
                [*_user(), (AttrType.STATE, state)], password=code_now().encode()
            )
            reject = await nas.request(_user(), password=b"nope")
        for reply, code in (
            (challenge, Code.ACCESS_CHALLENGE),
            (accept, Code.ACCESS_ACCEPT),
            (reject, Code.ACCESS_REJECT),
        ):
            assert reply.code is code
            assert reply.attributes[0][0] == AttrType.MESSAGE_AUTHENTICATOR

    async def test_retransmitted_first_round_gets_the_same_reply(
        self, running: app.Running
    ) -> None:
        """A retransmission gets the cached reply byte for byte: no second challenge."""
        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            data, _, _ = nas.build_request(_user(), password=PASSWORD.encode())
            nas.send_raw(data)
            first = await nas.receive_raw(3.0)
            nas.send_raw(data)
            second = await nas.receive_raw(3.0)
        assert first is not None
        assert first == second
        assert codec.decode(first).code is Code.ACCESS_CHALLENGE
        assert running.servers[0].counters["respond:duplicate"] == 1

    async def test_retransmission_while_working_is_dropped(self, running: app.Running) -> None:
        """A copy arriving while the first is still being decided gets no second answer."""
        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            data, _, _ = nas.build_request(_user(), password=PASSWORD.encode())
            nas.send_raw(data)
            nas.send_raw(data)  # argon2 takes tens of ms: the first is still in progress
            first = await nas.receive_raw(3.0)
            second = await nas.receive_raw(0.5)
        assert first is not None
        assert second is None
        assert running.servers[0].counters["drop:duplicate_in_progress"] == 1

    async def test_status_server_is_answered(self, running: app.Running) -> None:
        """Status-Server with a Message-Authenticator gets Access-Accept (RFC 5997)."""
        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            reply = await nas.status_server()
        assert reply.code is Code.ACCESS_ACCEPT


class TestDrops:
    async def test_unknown_client_is_dropped_and_counted(self, tmp_path: Path) -> None:
        """A source outside every client's ipaddr gets no answer; the drop is counted."""
        cfg = proxy.write_config(tmp_path)
        text = cfg.path.read_text().replace('ipaddr = ["127.0.0.0/8"]', 'ipaddr = ["127.0.0.2/32"]')
        cfg.path.write_text(text)
        async with proxy.in_process(cfg) as running:
            async with RadiusClient(
                "127.0.0.1", _port(running), SECRET.encode(), timeout=0.3
            ) as nas:
                with pytest.raises(TimeoutError):
                    await nas.request(_user(), password=b"x")
            assert running.servers[0].counters["drop:unknown_client"] == 1

    async def test_malformed_datagram_is_dropped_and_server_goes_on(
        self, running: app.Running
    ) -> None:
        """Garbage is counted and dropped; the next real request is answered."""
        async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=3) as nas:
            nas.send_raw(b"\x01\x02\x00\x50" + b"\x00" * 10)
            nas.send_raw(b"\x01\x02\x00\x18" + b"\x00" * 16 + b"\x01\x00\x00\x00")
            assert await nas.receive_raw(0.3) is None
            reply = await nas.request(_user(), password=b"wrong-password")
        assert reply.code is Code.ACCESS_REJECT
        assert running.servers[0].counters["drop:malformed"] == 2

    async def test_missing_message_authenticator_is_dropped_when_required(
        self, tmp_path: Path
    ) -> None:
        """require_message_authenticator = yes: an unsigned request is dropped (BlastRADIUS)."""
        cfg = proxy.write_config(tmp_path, client='require_message_authenticator = "yes"')
        async with proxy.in_process(cfg) as running:
            async with RadiusClient(
                "127.0.0.1", _port(running), SECRET.encode(), timeout=0.3
            ) as nas:
                with pytest.raises(TimeoutError):
                    await nas.request(_user(), password=b"x", message_authenticator=False)
            assert running.servers[0].counters["drop:missing_message_authenticator"] == 1

    async def test_overload_drops_and_counts(self, tmp_path: Path) -> None:
        """Past max_in_flight new requests are dropped (the NAS retransmits) and counted."""
        cfg = proxy.write_config(tmp_path, profile='primary = "local"', extra="")
        text = cfg.path.read_text().replace(
            'node_name = "test"', 'node_name = "test"\nmax_in_flight = 1'
        )
        cfg.path.write_text(text)
        async with proxy.in_process(cfg) as running:
            await proxy.enrol(running, "alice", password=PASSWORD)
            async with RadiusClient("127.0.0.1", _port(running), SECRET.encode()) as nas:
                for _ in range(4):
                    data, _, _ = nas.build_request(_user(), password=PASSWORD.encode())
                    nas.send_raw(data)
                answers = [await nas.receive_raw(2.0)]
                answers.append(await nas.receive_raw(0.3))
        assert answers[0] is not None
        assert answers[1] is None
        assert running.servers[0].counters["drop:overload"] == 3


class TestAuditLog:
    async def test_one_line_per_request_with_fixed_keys_and_no_secret(self, tmp_path: Path) -> None:
        """Accept, wrong password and wrong code each log request_finished; no secret appears."""
        buffer = io.StringIO()
        logs.configure(level="info", fmt="json", stream=buffer, cache=False)
        try:
            cfg = proxy.write_config(tmp_path, profile='primary = "local"')
            async with proxy.in_process(cfg) as running:
                await proxy.enrol(running, "alice", password=PASSWORD)
                port = _port(running)
                code = code_now()
                async with RadiusClient("127.0.0.1", port, SECRET.encode(), timeout=3) as nas:
                    ok = await nas.login("alice", PASSWORD.encode(), lambda _: code)
                    bad_pw = await nas.login("alice", b"wrong-password", lambda _: code)
                    bad_code = await nas.login(
                        "alice", PASSWORD.encode(), lambda _: "000000", max_rounds=2
                    )
                    states = [p.get(AttrType.STATE) for p in (bad_code.packet,)]
        finally:
            structlog.reset_defaults()
        assert (ok.outcome, bad_pw.outcome, bad_code.outcome) == ("accept", "reject", "challenge")
        text = buffer.getvalue()
        lines = [json.loads(line) for line in text.splitlines()]
        finished = [line for line in lines if line["event"] == "request_finished"]
        assert [(f["outcome"], f["reason"]) for f in finished] == [
            ("challenge", "challenge_issued"),
            ("accept", "mfa_ok"),
            ("reject", "bad_password"),
            ("challenge", "challenge_issued"),
            ("challenge", "bad_code"),
        ]
        for line in finished:
            for key in (
                "req_id",
                "client",
                "src",
                "user",
                "node",
                "server_ip",
                "outcome",
                "reason",
                "duration_ms",
                "mode",
            ):
                assert key in line, key
            assert line["client"] == "nas"
        assert finished[1]["user_id"]
        assert finished[1]["display_name"] == "Alice"
        assert finished[1]["factor"] == "totp"
        assert len(finished[1]["state_id"]) == 8
        forbidden = [
            PASSWORD,
            "wrong-password",
            code,
            SECRET,
            TOTP_SECRET.decode(),
            base64.b32encode(TOTP_SECRET).decode(),
            proxy.KEY_LINE.split()[1],
        ]
        forbidden += [s.hex() for s in states if s]
        for secret in forbidden:
            assert secret not in text, secret


class TestCluster:
    @pytest.fixture
    async def nodes(
        self, tmp_path: Path, redis_url: str
    ) -> AsyncIterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess]]:
        """Two started proxy processes on one Redis and one enrolment database (alice)."""
        from tests.support.ports import free_udp_port

        shared_db = str(tmp_path / "shared.db")
        a = proxy.write_config(
            tmp_path / "a",
            port=free_udp_port(),
            store="redis",
            redis_url=redis_url,
            node="node-a",
            database=shared_db,
            profile=NO_PRIMARY,
        )
        b = proxy.write_config(
            tmp_path / "b",
            port=free_udp_port(),
            store="redis",
            redis_url=redis_url,
            node="node-b",
            database=shared_db,
            profile=NO_PRIMARY,
        )
        started = (
            proxy.ProxyProcess(a, tmp_path / "a.log"),
            proxy.ProxyProcess(b, tmp_path / "b.log"),
        )
        await _enrol_shared(a)
        try:
            for node in started:
                await asyncio.to_thread(node.start)
            yield started
        finally:
            for node in started:
                await asyncio.to_thread(node.stop)

    async def test_challenge_started_on_one_node_finishes_on_another(
        self, nodes: tuple[proxy.ProxyProcess, proxy.ProxyProcess]
    ) -> None:
        """Node A issues the challenge; node B accepts the code (shared Redis, shared DB)."""
        node_a, node_b = nodes
        secret = SECRET.encode()
        async with RadiusClient("127.0.0.1", node_a.cfg.port, secret, timeout=3) as nas_a:
            challenge = await nas_a.request(_user(), password=b"any-password")
        state = challenge.get(AttrType.STATE)
        assert challenge.code is Code.ACCESS_CHALLENGE
        assert state is not None
        async with RadiusClient("127.0.0.1", node_b.cfg.port, secret, timeout=3) as nas_b:
            accept = await nas_b.request(
                [*_user(), (AttrType.STATE, state)], password=code_now().encode()
            )
            again = await nas_b.request(
                [*_user(), (AttrType.STATE, state)], password=code_now(-1).encode()
            )
        assert accept.code is Code.ACCESS_ACCEPT
        assert again.code is Code.ACCESS_REJECT

    async def test_retransmission_to_another_node_gets_the_first_reply(
        self, nodes: tuple[proxy.ProxyProcess, proxy.ProxyProcess]
    ) -> None:
        """The same round-one datagram sent to B after A answered: B resends A's reply."""
        node_a, node_b = nodes
        async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=3) as nas:
            data, _, _ = nas.build_request(_user(), password=b"any-password")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            from_a = await proxy.exchange(sock, data, node_a.cfg.port, wait=3)
            from_b = await proxy.exchange(sock, data, node_b.cfg.port, wait=3)
        await asyncio.to_thread(node_b.stop)  # its counters are logged at shutdown
        assert codec.decode(from_a).code is Code.ACCESS_CHALLENGE
        assert from_b == from_a
        assert await node_b.wait_for_output('"respond:duplicate_cluster":1')


async def _enrol_shared(cfg: proxy.ProxyConfig) -> None:
    from mfa_radius import config

    loaded = config.load(cfg.path)
    store = await app.open_enrolments(loaded)
    try:
        await store.add_user("alice", display_name="Alice")
        await store.add_totp("alice", TOTP_SECRET)
    finally:
        await store.close()
