"""The ``mfa-radius`` command line through typer's CliRunner: exit codes and what is printed.

Each test writes a real configuration (SQLite database, key file) in its own folder. Commands
that need a running proxy (``login``) talk to ``mfa-radius serve`` in a child process, because
the command itself runs its own event loop with ``asyncio.run``.

Most tests pass the configuration as a path relative to the test's folder: rich folds lines
longer than 80 columns when the output is not a terminal (see
``test_check_config_prints_each_error_on_one_line_when_output_is_not_a_terminal``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner, Result

from mfa_radius import __version__, app, config
from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.argon2_primary import hash_password
from mfa_radius.adapters.radius_client import RadiusClient
from mfa_radius.adapters.redis_store import RedisChallengeStore
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.cli import cli
from mfa_radius.core import limits, otp
from mfa_radius.core.model import User
from tests.support.ports import free_udp_port
from tests.support.proxy import (
    SECRET,
    TOTP_SECRET,
    ProxyConfig,
    ProxyProcess,
    in_process,
)
from tests.support.proxy import write_config as write_proxy_config

CONFIG = "radius.conf"
"""The configuration, relative to the test's working folder."""

PASSWORD = "alice-password-1"


def _invoke(args: Sequence[str], *, stdin: str | None = None) -> Result:
    """Run ``mfa-radius ARGS`` in this process; exceptions other than exits propagate."""
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def _ok(args: Sequence[str], *, stdin: str | None = None) -> Result:
    """Run a command that must succeed."""
    result = _invoke(args, stdin=stdin)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    return result


def write_config(directory: Path, *, init_database: bool = True, **settings: Any) -> ProxyConfig:
    """A test proxy configuration as an admin would leave it: key file 0600, database made.

    tests.support.proxy writes the key file with the process umask (0644 here), which the
    loader refuses, and no database, which every command but ``db init`` refuses.
    """
    cfg = write_proxy_config(directory, **settings)
    (directory / "enrolment.key").chmod(0o600)
    database = directory / str(settings.get("database", "enrolment.db"))
    if init_database and not database.exists():
        _ok(["db", "init", "-c", str(cfg.path)])
    return cfg


def _code(secret: bytes = TOTP_SECRET) -> str:
    """The current TOTP code of ``secret`` (30 s, 6 digits, SHA-1)."""
    return otp.hotp(secret, otp.timecode(time.time(), 30))


def _totp_secret(uri: str) -> bytes:
    """The raw secret of an otpauth:// URI."""
    return base64.b32decode(parse_qs(urlparse(uri).query)["secret"][0])


def _otpauth_uri(output: str) -> str:
    """The one otpauth:// URI printed in ``output``."""
    uris = [line.strip() for line in output.splitlines() if line.strip().startswith("otpauth://")]
    assert len(uris) == 1, output
    return uris[0]


def _with_store(path: Path, action: str, username: str = "alice") -> User | str | None:
    """Read the enrolment database the way the proxy would: a user, or a password hash."""

    async def run() -> User | str | None:
        store = await app.open_enrolments(config.load(path))
        try:
            if action == "password":
                return await store.get_password_hash(username)
            return await store.find_user(username)
        finally:
            await store.close()

    return asyncio.run(run())


def _enrol_alice(path: Path) -> None:
    """Create alice with the test TOTP secret and PASSWORD, as the CLI would."""

    async def run() -> None:
        store: SqlEnrolmentStore = await app.open_enrolments(config.load(path))
        try:
            await store.add_user("alice", display_name="Alice")
            await store.add_totp("alice", TOTP_SECRET)
            await store.set_password_hash("alice", hash_password(PASSWORD))
        finally:
            await store.close()

    asyncio.run(run())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's folder, made the working directory, holding a valid configuration."""
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path)
    return tmp_path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ProxyConfig]:
    """``mfa-radius serve`` in a child process on a fixed port, with alice enrolled."""
    cfg = write_config(tmp_path / "proxy", port=free_udp_port())
    _enrol_alice(cfg.path)
    proc = ProxyProcess(cfg, tmp_path / "proxy.log")
    try:
        proc.start()
        yield cfg
    finally:
        proc.stop()


class TestCheckConfig:
    def test_check_config_prints_ok_and_client_table(self, workdir: Path) -> None:
        """A valid configuration exits 0, prints the client table and an OK line."""
        result = _ok(["check-config", "-c", CONFIG])

        assert f"{CONFIG}: OK (store: memory)" in result.stdout
        assert "nas" in result.stdout
        assert "127.0.0.0/8" in result.stdout
        assert result.stderr == ""

    def test_check_config_exits_2_naming_file_and_key_when_key_unknown(self, workdir: Path) -> None:
        """An unknown key is exit 2 with ``file: key.path: unknown key``."""
        write_config(workdir, client='colour = "red"')

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert f"{CONFIG}: client[0].colour: unknown key" in result.stderr.splitlines()

    def test_check_config_exits_2_naming_file_and_key_when_secret_short(
        self, workdir: Path
    ) -> None:
        """A short shared secret is exit 2 naming the file and client[0].secret."""
        text = (workdir / CONFIG).read_text().replace(SECRET, "short-secret-1")
        (workdir / CONFIG).write_text(text)

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert f"{CONFIG}: client[0].secret: shared secret must be at least 16" in result.stderr

    def test_check_config_never_echoes_the_secret_when_secret_short(self, workdir: Path) -> None:
        """The rejected secret appears nowhere in the output."""
        text = (workdir / CONFIG).read_text().replace(SECRET, "short-secret-1")
        (workdir / CONFIG).write_text(text)

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert "short-secret-1" not in result.stdout + result.stderr

    def test_check_config_exits_2_naming_file_when_file_missing(self, workdir: Path) -> None:
        """A missing configuration file is exit 2 naming the file."""
        result = _invoke(["check-config", "-c", "missing.conf"])

        assert result.exit_code == 2
        assert "missing.conf: cannot read" in result.stderr

    def test_check_config_exits_2_naming_key_id_when_key_file_lacks_it(self, workdir: Path) -> None:
        """A key file without the key id the stored secrets use is exit 2 naming that id."""
        _enrol_alice(workdir / CONFIG)
        (workdir / "enrolment.key").write_text(Keyring.generate_line("other1") + "\n")

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert "key id 'test1' is not in the key file" in result.stderr

    def test_check_config_exits_2_naming_key_id_when_key_under_that_id_differs(
        self, workdir: Path
    ) -> None:
        """Another key under the same key id is exit 2 naming that id."""
        _enrol_alice(workdir / CONFIG)
        (workdir / "enrolment.key").write_text(Keyring.generate_line("test1") + "\n")

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert "key id 'test1' does not decrypt" in result.stderr

    def test_check_config_exits_2_naming_key_file_when_key_malformed(self, workdir: Path) -> None:
        """A key file whose line is not ``<id> <base64>`` is exit 2 naming the key file."""
        (workdir / "enrolment.key").write_text("test1 not-base64!\n")

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert "enrolment.key_file line 1" in result.stderr
        assert "not-base64!" not in result.stderr

    def test_check_config_prints_each_error_on_one_line_when_output_is_not_a_terminal(
        self, tmp_path: Path
    ) -> None:
        """Each ``file: key.path: problem`` line stays whole when piped (journal, grep, CI)."""
        directory = tmp_path / "a-folder-name-long-enough-to-push-the-line-past-80-columns"
        cfg = write_config(
            directory, init_database=False, client='require_message_authenticator = "maybe"'
        )

        result = _invoke(["check-config", "-c", str(cfg.path)])

        assert result.exit_code == 2
        assert (
            f"{cfg.path}: client[0].require_message_authenticator: "
            "Input should be 'yes', 'no' or 'auto'"
        ) in result.stderr.splitlines()

    def test_check_config_exits_2_naming_both_clients_when_address_duplicated(
        self, workdir: Path
    ) -> None:
        """Two clients with the same network are exit 2 naming both clients and the network."""
        write_config(workdir, extra=_client_block("nas2", "127.0.0.0/8"))

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert (
            f"{CONFIG}: client[1].ipaddr[0]: clients 'nas' and 'nas2' both list 127.0.0.0/8; "
            "a network may belong to one client only"
        ) in result.stderr.splitlines()

    def test_check_config_prints_overlapping_client_networks(self, workdir: Path) -> None:
        """A client network inside another client's is allowed, and printed as a note."""
        write_config(workdir, extra=_client_block("nas-five", "127.0.0.5"))

        result = _ok(["check-config", "-c", CONFIG])

        assert (
            f"note: {CONFIG}: client[1].ipaddr[0]: 127.0.0.5/32 of client 'nas-five' lies inside "
            "127.0.0.0/8 of client 'nas' (client[0].ipaddr[0]); requests from 127.0.0.5/32 use "
            "'nas-five', the most specific network"
        ) in result.stdout.splitlines()
        assert f"{CONFIG}: OK (store: memory)" in result.stdout

    def test_check_config_keeps_square_brackets_when_profile_unknown(self, workdir: Path) -> None:
        """``[profile.vpm]`` in the message is printed as written, not taken for console markup."""
        write_config(workdir, client='profile = "vpm"')

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert (
            f"{CONFIG}: client[0].profile: client 'nas' names profile 'vpm', "
            "which has no [profile.vpm] section"
        ) in result.stderr.splitlines()

    def test_check_config_prints_a_plain_reason_when_cidr_bad(self, workdir: Path) -> None:
        """A bad CIDR is one line with the key path and a reason, without pydantic internals."""
        text = (workdir / CONFIG).read_text().replace('"127.0.0.0/8"', '"10.0.0.300/24"')
        (workdir / CONFIG).write_text(text)

        result = _invoke(["check-config", "-c", CONFIG])

        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            "config error",
            f"{CONFIG}: client[0].ipaddr[0]: '10.0.0.300/24' is not an IPv4 or IPv6 address "
            "or CIDR network (like 10.0.0.0/8)",
        ]


def _client_block(name: str, ipaddr: str) -> str:
    """A second ``[[client]]`` block for :func:`write_config`'s ``extra``."""
    return f'[[client]]\nname = "{name}"\nipaddr = "{ipaddr}"\nsecret = "{SECRET}"\n'


class TestMain:
    def test_version_option_prints_name_and_version(self) -> None:
        """``mfa-radius --version`` prints ``mfa-radius <version>`` and exits 0."""
        result = _ok(["--version"])

        assert result.stdout == f"mfa-radius {__version__}\n"

    def test_help_describes_every_kind_of_second_factor(self) -> None:
        """The top-level help names TOTP, SMS, voice and approve calls."""
        result = _ok(["--help"])

        flat = _flat(result.stdout)
        assert "second factor (TOTP)" not in flat
        assert [
            word for word in ("TOTP", "SMS", "voice", "approve calls") if word not in flat
        ] == []


class TestUser:
    def test_user_add_creates_user_shown_by_user_show(self, workdir: Path) -> None:
        """``user add`` creates an active user that ``user show`` prints with its details."""
        added = _ok(
            ["user", "add", "bob", "-c", CONFIG, "--display-name", "Bob B", "--email", "b@x.org"]
        )
        shown = _ok(["user", "show", "bob", "-c", CONFIG])

        assert "user bob created" in added.stdout
        assert "Bob B" in shown.stdout
        assert "b@x.org" in shown.stdout
        assert "active" in shown.stdout

    def test_user_show_prints_square_brackets_in_user_data_as_written(self, workdir: Path) -> None:
        """A display name like ``[bold]Ops[/bold] [vpn]`` is shown verbatim, not as markup."""
        _ok(["user", "add", "bob", "-c", CONFIG, "--display-name", "[bold]Ops[/bold] [vpn]"])

        shown = _ok(["user", "show", "bob", "-c", CONFIG])

        assert "[bold]Ops[/bold] [vpn]" in shown.stdout

    def test_user_add_folds_the_username_to_lower_case(self, workdir: Path) -> None:
        """``user add Bob`` stores ``bob``, found again as ``BOB``."""
        _ok(["user", "add", "Bob", "-c", CONFIG])

        shown = _ok(["user", "show", "BOB", "-c", CONFIG])

        assert "bob" in shown.stdout

    def test_user_set_changes_the_phone_shown_masked(self, workdir: Path) -> None:
        """``user set --phone`` stores E.164; ``user show`` prints it masked."""
        _ok(["user", "add", "bob", "-c", CONFIG])
        _ok(["user", "set", "bob", "-c", CONFIG, "--phone", "+1 415 555 0123", "--email", "b@y"])
        shown = _ok(["user", "show", "bob", "-c", CONFIG])
        assert "*********23" in shown.stdout
        assert "4155550123" not in shown.stdout
        assert "b@y" in shown.stdout

    def test_user_set_refuses_an_invalid_number(self, workdir: Path) -> None:
        """A number that is not a valid phone number is exit 2, nothing changed."""
        _ok(["user", "add", "bob", "-c", CONFIG])
        result = _invoke(["user", "set", "bob", "-c", CONFIG, "--phone", "12345"])
        assert result.exit_code == 2
        assert "international form" in result.stderr

    def test_user_set_exits_1_for_an_unknown_user(self, workdir: Path) -> None:
        """Changing a user who does not exist is exit 1."""
        result = _invoke(["user", "set", "nobody", "-c", CONFIG, "--email", "x@y"])
        assert result.exit_code == 1

    def test_user_add_exits_1_when_user_exists(self, workdir: Path) -> None:
        """Adding an existing user is exit 1."""
        _ok(["user", "add", "bob", "-c", CONFIG])

        result = _invoke(["user", "add", "bob", "-c", CONFIG])

        assert result.exit_code == 1

    def test_user_list_shows_every_user(self, workdir: Path) -> None:
        """``user list`` prints one row per user."""
        _ok(["user", "add", "bob", "-c", CONFIG])
        _ok(["user", "add", "carol", "-c", CONFIG])

        listed = _ok(["user", "list", "-c", CONFIG])

        assert "bob" in listed.stdout
        assert "carol" in listed.stdout

    def test_user_show_exits_1_when_user_unknown(self, workdir: Path) -> None:
        """Showing a user that does not exist is exit 1 naming the user."""
        result = _invoke(["user", "show", "nobody", "-c", CONFIG])

        assert result.exit_code == 1
        assert "nobody" in result.stderr

    def test_user_disable_marks_user_disabled(self, workdir: Path) -> None:
        """``user disable`` makes ``user show`` print the user as disabled."""
        _ok(["user", "add", "bob", "-c", CONFIG])

        _ok(["user", "disable", "bob", "-c", CONFIG])

        assert "disabled" in _ok(["user", "show", "bob", "-c", CONFIG]).stdout

    def test_user_enable_marks_disabled_user_active(self, workdir: Path) -> None:
        """``user enable`` turns a disabled user active again."""
        _ok(["user", "add", "bob", "-c", CONFIG])
        _ok(["user", "disable", "bob", "-c", CONFIG])

        _ok(["user", "enable", "bob", "-c", CONFIG])

        shown = _ok(["user", "show", "bob", "-c", CONFIG]).stdout
        assert "active" in shown
        assert "disabled" not in shown

    def test_user_remove_deletes_user(self, workdir: Path) -> None:
        """After ``user remove`` the user is gone from the database."""
        _ok(["user", "add", "bob", "-c", CONFIG])

        _ok(["user", "remove", "bob", "-c", CONFIG])

        assert _invoke(["user", "show", "bob", "-c", CONFIG]).exit_code == 1
        assert _with_store(workdir / CONFIG, "user", "bob") is None

    def test_user_remove_exits_1_when_user_unknown(self, workdir: Path) -> None:
        """Removing a user that does not exist is exit 1."""
        assert _invoke(["user", "remove", "nobody", "-c", CONFIG]).exit_code == 1

    def test_user_passwd_sets_password_read_from_stdin(self, workdir: Path) -> None:
        """``--password-stdin`` stores an argon2id hash of the first line of standard input."""
        _ok(["user", "add", "bob", "-c", CONFIG])

        result = _ok(
            ["user", "passwd", "bob", "-c", CONFIG, "--password-stdin"], stdin="s3cret pw\n"
        )

        stored = _with_store(workdir / CONFIG, "password", "bob")
        assert isinstance(stored, str)
        assert stored.startswith("$argon2id$")
        assert PasswordHasher().verify(stored, "s3cret pw")
        assert "s3cret" not in result.stdout

    def test_user_passwd_exits_1_when_password_empty(self, workdir: Path) -> None:
        """An empty password on standard input is refused with exit 1."""
        _ok(["user", "add", "bob", "-c", CONFIG])

        result = _invoke(["user", "passwd", "bob", "-c", CONFIG, "--password-stdin"], stdin="\n")

        assert result.exit_code == 1
        assert _with_store(workdir / CONFIG, "password", "bob") is None

    def test_user_passwd_exits_1_when_user_unknown(self, workdir: Path) -> None:
        """Setting the password of a user that does not exist is exit 1."""
        result = _invoke(
            ["user", "passwd", "nobody", "-c", CONFIG, "--password-stdin"], stdin="pw\n"
        )

        assert result.exit_code == 1


class TestTotpEnrol:
    def test_totp_enrol_prints_otpauth_uri_with_configured_issuer(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The printed URI is a TOTP URI for the user carrying the [totp] issuer."""
        monkeypatch.chdir(tmp_path)
        write_config(tmp_path, extra='[totp]\nissuer = "Example VPN"\n')
        _ok(["user", "add", "bob", "-c", CONFIG])

        result = _ok(["totp", "enrol", "bob", "-c", CONFIG, "--no-qr"])

        uri = urlparse(_otpauth_uri(result.stdout))
        assert uri.scheme == "otpauth"
        assert uri.netloc == "totp"
        assert unquote(uri.path) == "/Example VPN:bob"
        assert parse_qs(uri.query)["issuer"] == ["Example VPN"]
        assert len(_totp_secret(_otpauth_uri(result.stdout))) == 20

    def test_totp_enrol_stores_a_token_shown_by_user_show(self, workdir: Path) -> None:
        """After enrolment the user has one token holding the printed secret."""
        _ok(["user", "add", "bob", "-c", CONFIG])

        result = _ok(["totp", "enrol", "bob", "-c", CONFIG, "--no-qr"])

        user = _with_store(workdir / CONFIG, "user", "bob")
        assert isinstance(user, User)
        assert [t.secret for t in user.tokens] == [_totp_secret(_otpauth_uri(result.stdout))]
        assert user.tokens[0].token_id[:8] in _ok(["user", "show", "bob", "-c", CONFIG]).stdout

    def test_totp_enrol_secret_completes_a_login(self, workdir: Path) -> None:
        """A user set up with the CLI logs in with the printed secret's current code."""
        _ok(["user", "add", "bob", "-c", CONFIG])
        _ok(["user", "passwd", "bob", "-c", CONFIG, "--password-stdin"], stdin=f"{PASSWORD}\n")
        uri = _otpauth_uri(_ok(["totp", "enrol", "bob", "-c", CONFIG, "--no-qr"]).stdout)
        code = _code(_totp_secret(uri))

        async def login() -> str:
            async with in_process(ProxyConfig(workdir / CONFIG, 0)) as proxy:
                port = proxy.addresses[0][1]
                async with RadiusClient("127.0.0.1", port, SECRET.encode(), timeout=3) as client:
                    result = await client.login("bob", PASSWORD.encode(), lambda _: code)
            return result.outcome

        assert asyncio.run(login()) == "accept"

    def test_totp_enrol_exits_1_when_user_unknown(self, workdir: Path) -> None:
        """Enrolling a token for a user that does not exist is exit 1 and prints no URI."""
        result = _invoke(["totp", "enrol", "nobody", "-c", CONFIG, "--no-qr"])

        assert result.exit_code == 1
        assert "otpauth://" not in result.stdout


class TestKeyGenerate:
    def test_key_generate_prints_a_line_the_keyring_accepts(self) -> None:
        """The printed line is a valid key file holding exactly one key."""
        result = _ok(["key", "generate"])

        keyring = Keyring.from_text(result.stdout, source="stdout")
        assert len(keyring.key_ids) == 1

    def test_key_generate_uses_the_given_key_id(self) -> None:
        """``--id`` names the key."""
        result = _ok(["key", "generate", "--id", "k2026"])

        assert Keyring.from_text(result.stdout, source="stdout").current_key_id == "k2026"

    def test_key_generate_prints_a_new_key_each_time(self) -> None:
        """Two runs print two different keys."""
        first = _ok(["key", "generate", "--id", "k1"]).stdout
        second = _ok(["key", "generate", "--id", "k1"]).stdout

        assert first != second


class TestLogin:
    def test_login_exits_0_and_prints_accept_when_code_right(self, served: ProxyConfig) -> None:
        """The right password and the current code end in ``outcome: accept`` and exit 0."""
        result = _invoke(
            [
                "login",
                "--user",
                "alice",
                "--port",
                str(served.port),
                "--secret",
                SECRET,
                "--password",
                PASSWORD,
                "--code",
                _code(),
                "--timeout",
                "3",
            ]
        )

        assert result.exit_code == 0, result.stdout + result.stderr
        assert "challenge: Enter the 6-digit code" in result.stdout
        assert "outcome: accept" in result.stdout

    def test_login_exits_1_and_prints_reject_when_password_wrong(self, served: ProxyConfig) -> None:
        """A wrong password ends in ``outcome: reject`` and exit 1."""
        result = _invoke(
            [
                "login",
                "--user",
                "alice",
                "--port",
                str(served.port),
                "--secret",
                SECRET,
                "--password",
                "wrong-password",
                "--code",
                _code(),
                "--timeout",
                "3",
            ]
        )

        assert result.exit_code == 1
        assert "outcome: reject" in result.stdout

    def test_login_reads_the_secret_from_secret_file(
        self, served: ProxyConfig, tmp_path: Path
    ) -> None:
        """``--secret-file`` takes the shared secret from the file's first line."""
        secret_file = tmp_path / "nas.secret"
        secret_file.write_text(f"{SECRET}\n")

        result = _invoke(
            [
                "login",
                "--user",
                "alice",
                "--port",
                str(served.port),
                "--secret-file",
                str(secret_file),
                "--password",
                PASSWORD,
                "--code",
                _code(),
                "--timeout",
                "3",
            ]
        )

        assert result.exit_code == 0, result.stdout + result.stderr

    def test_login_exits_2_naming_file_when_secret_file_missing(self, tmp_path: Path) -> None:
        """An unreadable --secret-file is exit 2 with a message naming it, not a traceback."""
        missing = tmp_path / "missing.secret"

        result = _invoke(
            [
                "login",
                "--user",
                "alice",
                "--secret-file",
                str(missing),
                "--password",
                "x",
                "--code",
                "123456",
            ]
        )

        assert result.exit_code == 2
        assert "missing.secret" in result.stderr

    def test_login_exits_2_naming_file_when_secret_file_empty(self, tmp_path: Path) -> None:
        """An empty --secret-file is exit 2 with a message naming it, not a traceback."""
        empty = tmp_path / "empty.secret"
        empty.write_text("")

        result = _invoke(
            [
                "login",
                "--user",
                "alice",
                "--secret-file",
                str(empty),
                "--password",
                "x",
                "--code",
                "123456",
            ]
        )

        assert result.exit_code == 2
        assert "empty.secret" in result.stderr

    def test_login_exits_1_when_nothing_answers(self) -> None:
        """No server on the port is exit 1 with a "no answer" message."""
        port = free_udp_port()

        result = _invoke(
            [
                "login",
                "--user",
                "alice",
                "--port",
                str(port),
                "--secret",
                SECRET,
                "--password",
                PASSWORD,
                "--code",
                "123456",
                "--timeout",
                "0.3",
            ]
        )

        assert result.exit_code == 1
        assert f"no answer from 127.0.0.1:{port}" in result.stderr

    def test_login_exits_2_when_no_secret_given(self) -> None:
        """Without --secret or --secret-file the command refuses with exit 2."""
        result = _invoke(["login", "--user", "alice", "--password", "x", "--code", "123456"])

        assert result.exit_code == 2


class TestServe:
    def test_serve_exits_2_naming_file_and_key_when_config_invalid(self, workdir: Path) -> None:
        """An invalid configuration stops ``serve`` before it starts, with exit 2."""
        write_config(workdir, client='colour = "red"')

        result = _invoke(["serve", "-c", CONFIG])

        assert result.exit_code == 2
        assert f"{CONFIG}: client[0].colour: unknown key" in result.stderr

    def test_serve_exits_2_naming_both_clients_when_address_duplicated(self, workdir: Path) -> None:
        """A network in two clients stops ``serve`` with exit 2 and a message, not a traceback."""
        write_config(workdir, extra=_client_block("nas2", "127.0.0.0/8"))

        result = _invoke(["serve", "-c", CONFIG])

        assert result.exit_code == 2
        assert "clients 'nas' and 'nas2' both list 127.0.0.0/8" in result.stderr

    def test_serve_exits_0_on_sigterm(self, tmp_path: Path) -> None:
        """A running ``mfa-radius serve`` stops cleanly with exit 0 on SIGTERM."""
        proc = ProxyProcess(write_config(tmp_path, port=free_udp_port()), tmp_path / "log")
        proc.start()

        assert proc.stop() == 0
        assert "server_stopped" in proc.output()

    def test_serve_exits_2_naming_listen_address_when_port_taken(self, workdir: Path) -> None:
        """A listen address already bound by another socket is exit 2 naming server.listen[0]."""
        with _bound_udp_socket() as port:
            write_config(workdir, port=port)
            served = _serve_until_exit(workdir)

        assert served.returncode == 2
        assert f"{CONFIG}: server.listen[0]: cannot bind 127.0.0.1:{port}" in _flat(served.stderr)

    def test_serve_says_why_the_port_cannot_be_bound(self, workdir: Path) -> None:
        """The bind error gives the operating system's reason (uvloop's serve loop included)."""
        with _bound_udp_socket() as port:
            write_config(workdir, port=port)
            served = _serve_until_exit(workdir)

        assert "Address already in use" in _flat(served.stderr)


@contextlib.contextmanager
def _bound_udp_socket() -> Iterator[int]:
    """Hold a UDP socket on 127.0.0.1 for the block; yields its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def _serve_until_exit(directory: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mfa-radius serve -c radius.conf`` in ``directory`` as a process; wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "mfa_radius", "serve", "-c", CONFIG],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _flat(text: str) -> str:
    """``text`` with every run of whitespace (rich's line folding included) as one space."""
    return " ".join(text.split())


class TestDemo:
    def test_demo_creates_its_files(self, tmp_path: Path) -> None:
        """``demo --no-serve`` writes the config, secret, key, password file and database."""
        _ok(["demo", "--no-serve", "--dir", str(tmp_path / "demo"), "--port", "18999"])

        names = {p.name for p in (tmp_path / "demo").iterdir()}
        assert {"radius.conf", "client.secret", "enrolment.key", "alice.password"} <= names
        assert "enrolment.db" in names
        assert (tmp_path / "demo" / "client.secret").stat().st_mode & 0o077 == 0

    def test_demo_creates_its_database_like_db_init_on_the_first_run_only(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first run creates the database mode 0600 and says so; a second run reuses it."""
        monkeypatch.chdir(tmp_path)
        args = ["demo", "--no-serve", "--dir", "demo", "--port", "18999"]

        first = _ok(args).stdout
        database = tmp_path / "demo" / "enrolment.db"
        mode = database.stat().st_mode & 0o777
        second = _ok(args).stdout

        assert f"enrolment database created: {database}" in first.splitlines()
        assert mode == 0o600
        assert "enrolment database created" not in second
        assert all(
            p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "demo").iterdir() if p.is_file()
        )

    def test_demo_prints_otpauth_uri_and_login_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The output holds alice's URI and a login command for the chosen port."""
        monkeypatch.chdir(tmp_path)

        result = _ok(["demo", "--no-serve", "--dir", "demo", "--port", "18999"])

        assert "issuer=mfa-radius%20demo" in _otpauth_uri(result.stdout)
        assert (
            "mfa-radius login --server 127.0.0.1 --port 18999 "
            "--secret-file demo/client.secret --user alice"
        ) in result.stdout

    def test_demo_reuses_the_user_when_run_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A second run prints the same URI and password: nothing is re-created."""
        monkeypatch.chdir(tmp_path)
        args = ["demo", "--no-serve", "--dir", "demo", "--port", "18999"]

        first = _ok(args).stdout
        second = _ok(args).stdout

        assert _otpauth_uri(first) == _otpauth_uri(second)
        assert _password_of(first) == _password_of(second)

    def test_demo_login_command_logs_in(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The printed login command, given the printed password and a code, is accepted."""
        monkeypatch.chdir(tmp_path)
        port = free_udp_port()
        shown = _ok(["demo", "--no-serve", "--dir", "demo", "--port", str(port)]).stdout
        command = next(line for line in shown.splitlines() if "mfa-radius login" in line)
        proc = ProxyProcess(ProxyConfig(tmp_path / "demo" / "radius.conf", port), tmp_path / "log")
        try:
            proc.start()
            code = _code(_totp_secret(_otpauth_uri(shown)))
            argv = shlex.split(command)[1:]
            result = _invoke([*argv, "--password", _password_of(shown), "--code", code])
        finally:
            proc.stop()

        assert result.exit_code == 0, result.stdout + result.stderr
        assert "outcome: accept" in result.stdout

    def test_demo_exits_2_with_one_line_naming_address_and_reason_when_port_taken(
        self, tmp_path: Path
    ) -> None:
        """A demo port already bound is one stderr line with the address and the OS reason."""
        with _bound_udp_socket() as port:
            demo = subprocess.run(
                [sys.executable, "-m", "mfa_radius", "demo", "--dir", "demo", "--port", str(port)],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        assert demo.returncode == 2
        assert demo.stderr.splitlines() == [
            f"demo/radius.conf: server.listen[0]: cannot bind 127.0.0.1:{port}: "
            "Address already in use"
        ]
        assert "Traceback" not in demo.stdout + demo.stderr

    def test_demo_says_the_existing_configs_port_when_port_differs(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A second run with another --port names the port the kept config listens on."""
        monkeypatch.chdir(tmp_path)
        _ok(["demo", "--no-serve", "--dir", "demo", "--port", "18999"])

        again = _ok(["demo", "--no-serve", "--dir", "demo", "--port", "18998"])

        assert "listens on 127.0.0.1:18999: --port 18998 is not used" in _flat(again.stderr)
        assert "mfa-radius login --server 127.0.0.1 --port 18999 " in again.stdout


def _password_of(demo_output: str) -> str:
    """alice's password from the demo's ``user: alice  password: ...`` line."""
    line = next(line for line in demo_output.splitlines() if line.startswith("user: alice"))
    return line.split("password:", 1)[1].strip()


class TestUnlock:
    def test_unlock_clears_the_lockout_in_redis(self, tmp_path: Path, redis_url: str) -> None:
        """`user unlock` removes the user's wrong-code counter and lockout from the store."""
        cfg = write_config(tmp_path, store="redis", redis_url=redis_url)

        async def lock() -> None:
            store = RedisChallengeStore(url=redis_url)
            try:
                await store.count(limits.failures_key("pat"), 600)
                await store.count(limits.lock_key("pat"), 600)
            finally:
                await store.close()

        asyncio.run(lock())
        result = _ok(["user", "unlock", "Pat", "-c", str(cfg.path)])
        assert "user pat unlocked" in result.stdout

        async def counts() -> tuple[int, int]:
            store = RedisChallengeStore(url=redis_url)
            try:
                return (
                    await store.peek_count(limits.failures_key("pat")),
                    await store.peek_count(limits.lock_key("pat")),
                )
            finally:
                await store.close()

        assert asyncio.run(counts()) == (0, 0)

    def test_unlock_reaches_a_running_proxy_through_its_admin_socket(self, tmp_path: Path) -> None:
        """With the memory store, `user unlock` asks the running proxy over its admin socket."""
        cfg = write_config(tmp_path / "proxy", port=free_udp_port())
        text = cfg.path.read_text().replace(
            'node_name = "test"', 'node_name = "test"\nadmin_socket = "admin.sock"'
        )
        cfg.path.write_text(text)
        proc = ProxyProcess(cfg, tmp_path / "proxy.log")
        proc.start()
        try:
            result = _ok(["user", "unlock", "Pat", "-c", str(cfg.path)])
        finally:
            proc.stop()
        assert "user pat unlocked" in result.stdout
        assert '"event":"user_unlocked"' in proc.output()

    def test_unlock_explains_the_in_process_store(self, workdir: Path) -> None:
        """With the memory store the command says why it cannot reach the running proxy."""
        result = _invoke(["user", "unlock", "pat", "-c", CONFIG])
        assert result.exit_code == 1
        assert "in-process store" in result.stderr
