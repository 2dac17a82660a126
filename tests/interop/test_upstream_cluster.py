"""Upstream RADIUS through the whole proxy: FreeRADIUS checks the password, two proxy nodes on
one Redis run the second factor, and the upstream's reply attributes survive the round trip."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfa_radius import app, config
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.core import otp
from mfa_radius.radius.packet import AttrType, Code
from tests.support import proxy
from tests.support.freeradius import FreeRadiusServer
from tests.support.ports import free_udp_port
from tests.support.proxy import SECRET, TOTP_SECRET

pytestmark = pytest.mark.interop

CISCO_AVPAIR = b"\x00\x00\x00\x09" + bytes((1, 19)) + b"shell:priv-lvl=15"

HANG_GUARD_S = 10.0
"""How long the NAS client waits for any reply: a hang guard, far above every window."""


def code_now(offset_steps: int = 0) -> str:
    return otp.hotp(TOTP_SECRET, otp.timecode(time.time(), 30) + offset_steps)


@pytest.fixture
def freeradius(tmp_path: Path) -> Iterator[FreeRadiusServer]:
    with FreeRadiusServer(tmp_path / "freeradius") as server:
        yield server


def _home_server(fr: FreeRadiusServer) -> str:
    return f"""
[[home_server]]
name = "freeradius"
ipaddr = "{fr.host}"
port = {fr.port}
secret = "{fr.secret}"
response_window = 1.0
"""


@pytest.fixture
def nodes(
    tmp_path: Path, redis_url: str, freeradius: FreeRadiusServer
) -> Iterator[tuple[proxy.ProxyProcess, proxy.ProxyProcess]]:
    shared_db = str(tmp_path / "shared.db")
    made = []
    for name in ("a", "b"):
        cfg = proxy.write_config(
            tmp_path / name,
            port=free_udp_port(),
            store="redis",
            redis_url=redis_url,
            node=f"node-{name}",
            database=shared_db,
            profile='primary = "upstream"\npass_reply_message = true',
            extra=_home_server(freeradius),
        )
        made.append(proxy.ProxyProcess(cfg, tmp_path / f"{name}.log"))
    yield made[0], made[1]
    for node in made:
        node.stop()


async def _enrol(cfg: proxy.ProxyConfig, *users: str) -> None:
    store = await app.open_enrolments(config.load(cfg.path))
    try:
        for user in users:
            await store.add_user(user)
            await store.add_totp(user, TOTP_SECRET)
    finally:
        await store.close()


async def test_upstream_attributes_survive_the_challenge_on_another_node(
    nodes: tuple[proxy.ProxyProcess, proxy.ProxyProcess],
) -> None:
    """FreeRADIUS's Class, Filter-Id, Session-Timeout and Cisco-AVPair come back on node B."""
    node_a, node_b = nodes
    await _enrol(node_a.cfg, "alice")
    await asyncio.to_thread(node_a.start)
    await asyncio.to_thread(node_b.start)
    user = [(AttrType.USER_NAME, b"alice")]
    async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=3) as nas:
        challenge = await nas.request(user, password=b"alice-pw")
    state = challenge.get(AttrType.STATE)
    assert challenge.code is Code.ACCESS_CHALLENGE
    assert state is not None
    assert challenge.get(AttrType.CLASS) is None  # granted only after the second factor
    async with RadiusClient("127.0.0.1", node_b.cfg.port, SECRET.encode(), timeout=3) as nas:
        accept = await nas.request([*user, (AttrType.STATE, state)], password=code_now().encode())
    assert accept.code is Code.ACCESS_ACCEPT
    assert accept.get(AttrType.CLASS) == b"vpn-class"
    assert accept.get(AttrType.FILTER_ID) == b"staff"
    assert accept.get(AttrType.SESSION_TIMEOUT) == (3600).to_bytes(4, "big")
    assert accept.get(AttrType.VENDOR_SPECIFIC) == CISCO_AVPAIR


async def test_upstream_reject_is_passed_on_with_its_message(
    nodes: tuple[proxy.ProxyProcess, proxy.ProxyProcess],
) -> None:
    """A wrong password is rejected by FreeRADIUS; its Reply-Message reaches the NAS."""
    node_a, _ = nodes
    await _enrol(node_a.cfg, "alice")
    await asyncio.to_thread(node_a.start)
    async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=3) as nas:
        reject = await nas.request([(AttrType.USER_NAME, b"alice")], password=b"wrong")
    assert reject.code is Code.ACCESS_REJECT
    assert reject.get(AttrType.STATE) is None
    assert reject.get(AttrType.REPLY_MESSAGE) is not None
    assert await node_a.wait_for_output('"reason":"primary_rejected"')
    assert '"upstream":"freeradius"' in node_a.output()


async def test_upstream_challenge_is_relayed_then_our_second_factor_follows(
    nodes: tuple[proxy.ProxyProcess, proxy.ProxyProcess],
) -> None:
    """carol: FreeRADIUS asks for a PIN (relayed under our State), then we ask for the code."""
    node_a, node_b = nodes
    await _enrol(node_a.cfg, "carol")
    await asyncio.to_thread(node_a.start)
    await asyncio.to_thread(node_b.start)
    user = [(AttrType.USER_NAME, b"carol")]
    async with RadiusClient("127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=3) as nas:
        pin = await nas.request(user, password=b"carol-pw")
        assert pin.code is Code.ACCESS_CHALLENGE
        assert pin.get(AttrType.REPLY_MESSAGE) == b"Enter PIN"
        our_state = pin.get(AttrType.STATE)
        assert our_state is not None
        assert our_state != b"pin-state-1"  # the upstream's State never reaches the NAS
    async with RadiusClient("127.0.0.1", node_b.cfg.port, SECRET.encode(), timeout=3) as nas:
        totp = await nas.request([*user, (AttrType.STATE, our_state)], password=b"4321")
        assert totp.code is Code.ACCESS_CHALLENGE
        totp_state = totp.get(AttrType.STATE)
        assert totp_state is not None
        accept = await nas.request(
            [*user, (AttrType.STATE, totp_state)], password=code_now().encode()
        )
    assert accept.code is Code.ACCESS_ACCEPT


async def test_upstream_down_gives_the_fail_mode_answer_in_time(
    nodes: tuple[proxy.ProxyProcess, proxy.ProxyProcess], freeradius: FreeRadiusServer
) -> None:
    """FreeRADIUS stopped: the NAS gets Access-Reject within its window, not silence.

    The NAS's window is the profile's response_window (3 s); the home server's is 1 s. The
    reason tells which ran out first: ``primary_unavailable`` is the home server's window
    ending inside the decision's budget (0.9 x 3 s); had the answer come later, the engine's
    own deadline would have fired first and the reason would be ``timeout``. The client's
    timeout is only a hang guard.
    """
    node_a, _ = nodes
    await _enrol(node_a.cfg, "alice")
    await asyncio.to_thread(node_a.start)
    freeradius.stop()
    async with RadiusClient(
        "127.0.0.1", node_a.cfg.port, SECRET.encode(), timeout=HANG_GUARD_S
    ) as nas:
        reject = await nas.request([(AttrType.USER_NAME, b"alice")], password=b"alice-pw")
    assert reject.code is Code.ACCESS_REJECT
    assert await node_a.wait_for_output('"reason":"primary_unavailable"')
    assert '"reason":"timeout"' not in node_a.output()
