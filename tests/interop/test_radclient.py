"""FreeRADIUS radclient, a third-party NAS stand-in, logs in through the proxy.

radclient checks every reply it receives: the Response Authenticator (RFC 2865 §3) and, when
present, the Message-Authenticator (RFC 3579 §3.2). A reply failing either is reported on
stderr ("Reply verification failed") and dropped, so an empty stderr with the expected reply
code proves that a real client accepts our packets. ``Response-Packet-Type`` in the input tells
radclient which reply to expect, so its exit status says whether the expected one came.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mfa_radius.core import otp
from mfa_radius.core.prompts import DEFAULT_PROMPT
from tests.interop.conftest import Radclient, RadclientRun
from tests.support.proxy import SECRET, TOTP_SECRET, enrol, in_process, write_config

pytestmark = pytest.mark.interop

PASSWORD = "alice-password-1"
MESSAGE_AUTHENTICATOR = "Message-Authenticator = 0x00"
"""radclient computes the real value when it sends the packet."""

OTHER_SECRET = "another-shared-secret-0123"


@contextlib.asynccontextmanager
async def _proxy(directory: Path, *, client: str = "") -> AsyncIterator[int]:
    """Run an in-process proxy with alice enrolled (password and TOTP); yield its port."""
    cfg = write_config(directory, client=client)
    async with in_process(cfg) as proxy:
        await enrol(proxy, "alice", password=PASSWORD)
        yield proxy.addresses[0][1]


def _code(offset: int = 0) -> str:
    """The test token's code for the current time step plus ``offset`` steps."""
    return otp.hotp(TOTP_SECRET, otp.timecode(time.time(), 30) + offset)


def _wrong_code() -> str:
    """A code that no time step near now produces."""
    near = {_code(offset) for offset in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in near)


async def _first_round(
    radclient: Radclient,
    port: int,
    *,
    message_authenticator: bool = True,
    expect: str = "Access-Challenge",
    secret: str = SECRET,
    password: str = PASSWORD,
) -> RadclientRun:
    lines = ['User-Name = "alice"', f'User-Password = "{password}"']
    lines.append(f"Response-Packet-Type = {expect}")
    if message_authenticator:
        lines.append(MESSAGE_AUTHENTICATOR)
    return await radclient.run(port, "auth", secret, lines)


async def _second_round(
    radclient: Radclient,
    port: int,
    state: str,
    code: str,
    *,
    message_authenticator: bool = True,
    expect: str = "Access-Accept",
) -> RadclientRun:
    lines = ['User-Name = "alice"', f'User-Password = "{code}"', f"State = {state}"]
    lines.append(f"Response-Packet-Type = {expect}")
    if message_authenticator:
        lines.append(MESSAGE_AUTHENTICATOR)
    return await radclient.run(port, "auth", SECRET, lines)


def _state_of(run: RadclientRun) -> str:
    """The State of an Access-Challenge that radclient accepted."""
    assert run.returncode == 0, run.describe()
    assert run.stderr == "", run.describe()
    assert run.received == "Access-Challenge", run.describe()
    state = run.reply_attributes().get("State", "")
    assert state.startswith("0x"), run.describe()
    return state


def _assert_reply(run: RadclientRun, code: str) -> None:
    """radclient got ``code``, verified it, and had nothing to complain about."""
    assert run.received == code, run.describe()
    assert run.returncode == 0, run.describe()
    assert run.stderr == "", run.describe()


async def test_first_round_gets_challenge_with_prompt_and_state(
    radclient: Radclient, tmp_path: Path
) -> None:
    """The right password gets an Access-Challenge carrying the prompt and a 16-octet State."""
    async with _proxy(tmp_path / "proxy") as port:
        run = await _first_round(radclient, port)

    _assert_reply(run, "Access-Challenge")
    attributes = run.reply_attributes()
    assert attributes["Reply-Message"] == '"' + DEFAULT_PROMPT.format(digits=6) + '"'
    assert len(attributes["State"]) == 2 + 2 * 16
    assert attributes["Message-Authenticator"].startswith("0x")


async def test_full_login_is_accepted_with_message_authenticator(
    radclient: Radclient, tmp_path: Path
) -> None:
    """Password, then State and the current code, both signed, end in an Access-Accept."""
    async with _proxy(tmp_path / "proxy") as port:
        state = _state_of(await _first_round(radclient, port))
        run = await _second_round(radclient, port, state, _code())

    _assert_reply(run, "Access-Accept")


async def test_full_login_is_accepted_without_message_authenticator_when_client_allows_it(
    radclient: Radclient, tmp_path: Path
) -> None:
    """A client configured require_message_authenticator = "no" logs in with unsigned requests."""
    async with _proxy(tmp_path / "proxy", client='require_message_authenticator = "no"') as port:
        first = await _first_round(radclient, port, message_authenticator=False)
        state = _state_of(first)
        run = await _second_round(radclient, port, state, _code(), message_authenticator=False)

    _assert_reply(run, "Access-Accept")


async def test_request_without_message_authenticator_gets_no_answer_when_client_requires_it(
    radclient: Radclient, tmp_path: Path
) -> None:
    """A client configured require_message_authenticator = "yes" is not answered when unsigned."""
    async with _proxy(tmp_path / "proxy", client='require_message_authenticator = "yes"') as port:
        run = await _first_round(radclient, port, message_authenticator=False)

    assert run.received is None, run.describe()
    assert run.returncode != 0, run.describe()
    assert "No reply from server" in run.stdout, run.describe()


async def test_request_without_message_authenticator_gets_no_answer_after_auto_client_sent_one(
    radclient: Radclient, tmp_path: Path
) -> None:
    """Under the default "auto" policy, once a client has signed a request it must keep signing."""
    async with _proxy(tmp_path / "proxy") as port:
        _state_of(await _first_round(radclient, port))
        run = await _first_round(radclient, port, message_authenticator=False)

    assert run.received is None, run.describe()
    assert run.returncode != 0, run.describe()


async def test_wrong_code_gets_another_challenge(radclient: Radclient, tmp_path: Path) -> None:
    """A wrong code in the second round gets a new Access-Challenge with a State."""
    async with _proxy(tmp_path / "proxy") as port:
        state = _state_of(await _first_round(radclient, port))
        run = await _second_round(radclient, port, state, _wrong_code(), expect="Access-Challenge")

    _assert_reply(run, "Access-Challenge")
    assert run.reply_attributes()["State"].startswith("0x")
    assert "Reply-Message" in run.reply_attributes()


async def test_right_code_after_a_wrong_one_is_accepted(
    radclient: Radclient, tmp_path: Path
) -> None:
    """The State of the retry challenge, answered with the right code, ends in Access-Accept."""
    async with _proxy(tmp_path / "proxy") as port:
        state = _state_of(await _first_round(radclient, port))
        retry = await _second_round(
            radclient, port, state, _wrong_code(), expect="Access-Challenge"
        )
        run = await _second_round(radclient, port, _state_of(retry), _code())

    _assert_reply(run, "Access-Accept")


async def test_wrong_password_gets_access_reject(radclient: Radclient, tmp_path: Path) -> None:
    """A wrong password ends the login at once with a verified Access-Reject."""
    async with _proxy(tmp_path / "proxy") as port:
        run = await _first_round(
            radclient, port, password="not-the-password", expect="Access-Reject"
        )

    _assert_reply(run, "Access-Reject")


async def test_radclient_refuses_replies_when_secrets_differ(
    radclient: Radclient, tmp_path: Path
) -> None:
    """radclient does verify replies: signed with another secret, ours fail its check.

    This is the control for the empty-stderr assertions of the other tests.
    """
    async with _proxy(tmp_path / "proxy", client='require_message_authenticator = "no"') as port:
        run = await _first_round(radclient, port, message_authenticator=False, secret=OTHER_SECRET)

    assert run.received is None, run.describe()
    assert "Reply verification failed" in run.stderr, run.describe()


async def test_status_server_gets_access_accept(radclient: Radclient, tmp_path: Path) -> None:
    """A signed Status-Server (RFC 5997) gets a verified Access-Accept."""
    async with _proxy(tmp_path / "proxy") as port:
        run = await radclient.run(
            port, "status", SECRET, [MESSAGE_AUTHENTICATOR, "Response-Packet-Type = Access-Accept"]
        )

    _assert_reply(run, "Access-Accept")
