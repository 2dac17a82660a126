"""LDAP as the password check through the whole proxy: a real slapd over LDAPS, group rules
and exemptions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mfa_radius import app
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.core import otp
from mfa_radius.radius.packet import AttrType, Code
from tests.support import proxy
from tests.support.proxy import SECRET, TOTP_SECRET
from tests.support.slapd import ALICE, BOB, SERVICE_DN, SERVICE_PASSWORD, SlapdServer

pytestmark = pytest.mark.ldap


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    with SlapdServer(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def running(tmp_path: Path, slapd: SlapdServer) -> AsyncIterator[app.Running]:
    (tmp_path / "ldap.password").write_text(SERVICE_PASSWORD + "\n")
    (tmp_path / "ldap.password").chmod(0o600)
    ldap = f"""
[ldap]
server = ["{slapd.tls_url}"]
ca_file = "{slapd.ca_file}"
bind_dn = "{SERVICE_DN}"
bind_password_file = "ldap.password"
base_dn = "dc=example,dc=org"
user_filter = "(uid={{username}})"
"""
    profile = (
        'primary = "ldap"\nrequire_groups = ["vpn-users", "admins"]\nexempt_groups = ["admins"]'
    )
    cfg = proxy.write_config(tmp_path, profile=profile, extra=ldap)
    async with proxy.in_process(cfg) as running:
        await running.enrolments.add_user("alice")
        await running.enrolments.add_totp("alice", TOTP_SECRET)
        yield running


def _port(running: app.Running) -> int:
    return running.addresses[0][1]


async def test_directory_password_then_code_logs_in(running: app.Running) -> None:
    """alice: LDAPS bind with her directory password, then her TOTP code."""
    code = otp.hotp(TOTP_SECRET, otp.timecode(time.time(), 30))
    async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=5) as nas:
        result = await nas.login("alice", ALICE.password.encode(), lambda _: code)
    assert result.outcome == "accept"


async def test_wrong_directory_password_is_rejected(running: app.Running) -> None:
    """A wrong password is refused by the directory: Access-Reject, no challenge."""
    async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=5) as nas:
        reply = await nas.request([(AttrType.USER_NAME, b"alice")], password=b"wrong")
    assert reply.code is Code.ACCESS_REJECT


async def test_exempt_group_member_skips_the_second_factor(running: app.Running) -> None:
    """bob is in the exempt group admins: accepted on his password alone."""
    async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=5) as nas:
        reply = await nas.request([(AttrType.USER_NAME, b"bob")], password=BOB.password.encode())
    assert reply.code is Code.ACCESS_ACCEPT


async def test_user_outside_required_groups_is_rejected(running: app.Running) -> None:
    """Jane Doe is in no required group: rejected after a correct password."""
    async with RadiusClient("127.0.0.1", _port(running), SECRET.encode(), timeout=5) as nas:
        reply = await nas.request([(AttrType.USER_NAME, b"doe,jane+x")], password=b"doe-Pa55word")
    assert reply.code is Code.ACCESS_REJECT
