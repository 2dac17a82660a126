"""Files the proxy reads and creates: key and secret file modes, the enrolment database.

Every case is made for real: files written and chmod-ed on disk, symlinks, a missing database,
the loader, the composition root and the ``mfa-radius`` command (in this process and as a
child process for ``serve``).
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mfa_radius import app, config
from mfa_radius.cli import cli
from mfa_radius.errors import ConfigError
from tests.support.proxy import KEY_LINE, SECRET, ProxyConfig, write_config

SECRET_FILE = "peer.secret"
"""Name of the secret file each parametrised configuration points at."""

MINIMAL = f"""
[[client]]
name = "vpn"
ipaddr = "127.0.0.1"
secret = "{SECRET}"
"""

CLIENT_WITH_FILE = f"""
[[client]]
name = "vpn"
ipaddr = "127.0.0.1"
secret_file = "{SECRET_FILE}"
"""

SECRET_KEYS: dict[str, str] = {
    "client[0].secret_file": CLIENT_WITH_FILE,
    "home_server[0].secret_file": MINIMAL
    + '[profile.default]\nprimary = "upstream"\n'
    + f'[[home_server]]\nname = "nps"\nipaddr = "127.0.0.1"\nsecret_file = "{SECRET_FILE}"\n',
    "ldap.bind_password_file": MINIMAL
    + '[profile.default]\nprimary = "ldap"\n'
    + '[ldap]\nserver = ["ldaps://ldap.example.org"]\nbind_dn = "cn=svc"\n'
    + f'bind_password_file = "{SECRET_FILE}"\nbase_dn = "dc=example"\n',
    "redis.password_file": MINIMAL + f'[redis]\npassword_file = "{SECRET_FILE}"\n',
    "enrolment.key_file": MINIMAL + f'[enrolment]\nkey_file = "{SECRET_FILE}"\n',
    "twilio.auth_token_file": MINIMAL + f'[twilio]\nauth_token_file = "{SECRET_FILE}"\n',
}
"""A configuration for each ``*_file`` key the loader reads, all naming SECRET_FILE."""

OPEN_MODES = {
    0o644: "readable",
    0o640: "readable",
    0o604: "readable",
    0o620: "writable",
    0o602: "writable",
    0o660: "readable and writable",
    0o666: "readable and writable",
}
"""Modes that let group or others in, with the word the message uses."""


def _invoke(args: Sequence[str]) -> Result:
    """Run ``mfa-radius ARGS`` in this process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _serve(cfg: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mfa-radius serve -c CFG`` as a child process until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "mfa_radius", "serve", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _config_with_secret(tmp_path: Path, key: str, mode: int) -> tuple[Path, Path]:
    """The configuration for ``key`` and its secret file, chmod-ed to ``mode``."""
    secret = tmp_path / SECRET_FILE
    secret.write_text(SECRET + "\n", encoding="utf-8")
    secret.chmod(mode)
    path = tmp_path / "radius.conf"
    path.write_text(SECRET_KEYS[key], encoding="utf-8")
    return path, secret


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _proxy(directory: Path) -> ProxyConfig:
    """A test proxy configuration whose key file is private (0600), without a database."""
    cfg = write_config(directory)
    (directory / "enrolment.key").chmod(0o600)
    for suffix in ("", "-wal", "-shm"):  # should the shared writer ever make one
        (directory / f"enrolment.db{suffix}").unlink(missing_ok=True)
    return cfg


class TestSecretFileModes:
    @pytest.mark.parametrize("key", SECRET_KEYS)
    @pytest.mark.parametrize("mode", OPEN_MODES)
    def test_load_refuses_a_secret_file_open_to_group_or_others(
        self, tmp_path: Path, key: str, mode: int
    ) -> None:
        """Each ``*_file`` the loader reads is refused, naming file, key and mode, when open."""
        path, secret = _config_with_secret(tmp_path, key, mode)

        with pytest.raises(ConfigError) as caught:
            config.load(path, environ={})

        assert str(caught.value) == (
            f"{path}: {key}: {secret} is {OPEN_MODES[mode]} by group or others "
            f"(mode {mode:04o}); make it private with `chmod 600 {secret}`, "
            "or set allow_insecure_permissions = true in [server]"
        )

    @pytest.mark.parametrize("key", SECRET_KEYS)
    @pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
    def test_load_accepts_a_secret_file_only_its_owner_can_use(
        self, tmp_path: Path, key: str, mode: int
    ) -> None:
        """0600, 0400 and 0700 leave group and others out: the file is read."""
        path, _ = _config_with_secret(tmp_path, key, mode)

        config.load(path, environ={})

    def test_load_never_quotes_the_secret_when_refusing_a_file(self, tmp_path: Path) -> None:
        """The refused file's contents appear nowhere in the message."""
        path, _ = _config_with_secret(tmp_path, "client[0].secret_file", 0o644)

        with pytest.raises(ConfigError) as caught:
            config.load(path)

        assert SECRET not in str(caught.value)

    def test_load_accepts_an_open_file_when_allow_insecure_permissions_is_set(
        self, tmp_path: Path
    ) -> None:
        """``[server] allow_insecure_permissions = true`` turns the check off."""
        path, _ = _config_with_secret(tmp_path, "client[0].secret_file", 0o644)
        path.write_text(
            "[server]\nallow_insecure_permissions = true\n" + CLIENT_WITH_FILE, encoding="utf-8"
        )

        loaded = config.load(path)

        assert loaded.client_secrets["vpn"].get_secret_value() == SECRET

    def test_load_checks_the_target_of_a_symlink(self, tmp_path: Path) -> None:
        """A private link to an open file is refused, naming the link and its target."""
        target = tmp_path / "real.secret"
        target.write_text(SECRET + "\n", encoding="utf-8")
        target.chmod(0o644)
        link = tmp_path / SECRET_FILE
        link.symlink_to(target)
        path = tmp_path / "radius.conf"
        path.write_text(CLIENT_WITH_FILE, encoding="utf-8")

        with pytest.raises(ConfigError) as caught:
            config.load(path)

        assert str(caught.value) == (
            f"{path}: client[0].secret_file: {link} (a symlink to {target}) is readable by "
            f"group or others (mode 0644); make it private with `chmod 600 {target}`, "
            "or set allow_insecure_permissions = true in [server]"
        )

    def test_load_accepts_a_symlink_to_a_private_file(self, tmp_path: Path) -> None:
        """A link (always 0777 itself) to a 0600 file is accepted: the target is what counts."""
        target = tmp_path / "real.secret"
        target.write_text(SECRET + "\n", encoding="utf-8")
        target.chmod(0o600)
        (tmp_path / SECRET_FILE).symlink_to(target)
        path = tmp_path / "radius.conf"
        path.write_text(CLIENT_WITH_FILE, encoding="utf-8")

        loaded = config.load(path)

        assert loaded.client_secrets["vpn"].get_secret_value() == SECRET

    def test_check_config_exits_2_naming_the_key_file_when_it_is_0644(self, tmp_path: Path) -> None:
        """``check-config`` prints the loader's line and exits 2 for a world-readable key."""
        cfg = _proxy(tmp_path)
        key = tmp_path / "enrolment.key"
        key.chmod(0o644)

        result = _invoke(["check-config", "-c", str(cfg.path)])

        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            "config error",
            f"{cfg.path}: enrolment.key_file: {key} is readable by group or others "
            f"(mode 0644); make it private with `chmod 600 {key}`, "
            "or set allow_insecure_permissions = true in [server]",
        ]
        assert KEY_LINE.split()[1] not in result.stdout + result.stderr

    def test_serve_exits_2_naming_the_key_file_when_it_is_group_readable(
        self, tmp_path: Path
    ) -> None:
        """``serve`` refuses to start with a 0640 key file: exit 2 and the same message."""
        cfg = _proxy(tmp_path)
        key = tmp_path / "enrolment.key"
        key.chmod(0o640)

        served = _serve(cfg.path)

        assert served.returncode == 2
        assert (
            f"{cfg.path}: enrolment.key_file: {key} is readable by group or others (mode 0640)"
        ) in served.stderr
        assert "Traceback" not in served.stderr


class TestMissingDatabase:
    def test_require_database_names_the_config_key_and_the_missing_file(
        self, tmp_path: Path
    ) -> None:
        """The loaded configuration refuses a missing SQLite file: file, key, path, command."""
        cfg = _proxy(tmp_path)
        loaded = config.load(cfg.path)

        with pytest.raises(ConfigError) as caught:
            loaded.require_database()

        assert str(caught.value) == (
            f"{cfg.path}: enrolment.database: the SQLite database {tmp_path / 'enrolment.db'} "
            f"does not exist; create it with `mfa-radius db init -c {cfg.path}`"
        )

    def test_the_proxy_does_not_start_or_create_a_missing_database(self, tmp_path: Path) -> None:
        """The composition root (app.running) fails with a ConfigError and creates no file."""
        cfg = _proxy(tmp_path)

        async def start() -> None:
            async with app.running(config.load(cfg.path)):
                pass

        with pytest.raises(ConfigError, match=f"{tmp_path / 'enrolment.db'} does not exist"):
            asyncio.run(start())
        assert not (tmp_path / "enrolment.db").exists()

    def test_check_config_exits_2_naming_the_missing_database(self, tmp_path: Path) -> None:
        """``check-config`` with no database is exit 2 naming it; none is created."""
        cfg = _proxy(tmp_path)

        result = _invoke(["check-config", "-c", str(cfg.path)])

        assert result.exit_code == 2
        assert (
            f"{cfg.path}: enrolment.database: the SQLite database {tmp_path / 'enrolment.db'} "
            "does not exist"
        ) in result.stderr
        assert not (tmp_path / "enrolment.db").exists()

    def test_serve_exits_2_naming_the_missing_database(self, tmp_path: Path) -> None:
        """``serve`` with no database is exit 2 naming it and the command that creates it."""
        cfg = _proxy(tmp_path)

        served = _serve(cfg.path)

        assert served.returncode == 2
        assert (
            f"{cfg.path}: enrolment.database: the SQLite database {tmp_path / 'enrolment.db'} "
            f"does not exist; create it with `mfa-radius db init -c {cfg.path}`"
        ) in served.stderr
        assert not (tmp_path / "enrolment.db").exists()

    def test_user_add_exits_2_instead_of_creating_the_database(self, tmp_path: Path) -> None:
        """An admin command on a missing database refuses too (exit 2), creating nothing."""
        cfg = _proxy(tmp_path)

        result = _invoke(["user", "add", "alice", "-c", str(cfg.path)])

        assert result.exit_code == 2
        assert "does not exist; create it with `mfa-radius db init" in result.stderr
        assert not (tmp_path / "enrolment.db").exists()


class TestDbInit:
    def test_db_init_creates_the_database_mode_0600_and_prints_its_path(
        self, tmp_path: Path
    ) -> None:
        """``db init`` makes the file owner-only and says where it is."""
        cfg = _proxy(tmp_path)

        result = _invoke(["db", "init", "-c", str(cfg.path)])

        assert result.exit_code == 0, result.stderr
        database = tmp_path / "enrolment.db"
        assert result.stdout == f"enrolment database created: {database}\n"
        assert _mode(database) == 0o600
        assert {p.name for p in tmp_path.iterdir()} == {
            "radius.conf",
            "enrolment.key",
            database.name,
        }

    def test_check_config_passes_after_db_init(self, tmp_path: Path) -> None:
        """The database db init made is migrated and holds the key check: check-config is OK."""
        cfg = _proxy(tmp_path)
        assert _invoke(["db", "init", "-c", str(cfg.path)]).exit_code == 0

        result = _invoke(["check-config", "-c", str(cfg.path)])

        assert result.exit_code == 0, result.stderr
        assert f"{cfg.path}: OK (store: memory)" in result.stdout

    def test_db_init_refuses_an_existing_database_and_keeps_its_users(self, tmp_path: Path) -> None:
        """A second ``db init`` exits 1 naming the file; the users in it are still there."""
        cfg = _proxy(tmp_path)
        assert _invoke(["db", "init", "-c", str(cfg.path)]).exit_code == 0
        assert _invoke(["user", "add", "alice", "-c", str(cfg.path)]).exit_code == 0

        again = _invoke(["db", "init", "-c", str(cfg.path)])

        assert again.exit_code == 1
        database = tmp_path / "enrolment.db"
        assert f"the enrolment database {database} already exists" in again.stderr
        shown = _invoke(["user", "show", "alice", "-c", str(cfg.path)])
        assert shown.exit_code == 0
        assert "alice" in shown.stdout

    def test_db_init_refuses_an_existing_empty_file(self, tmp_path: Path) -> None:
        """Any file at the path is left alone, even an empty one."""
        cfg = _proxy(tmp_path)
        database = tmp_path / "enrolment.db"
        database.write_bytes(b"")
        database.chmod(0o640)

        result = _invoke(["db", "init", "-c", str(cfg.path)])

        assert result.exit_code == 1
        assert "already exists" in result.stderr
        assert _mode(database) == 0o640

    def test_db_init_does_not_follow_a_symlink_at_the_database_path(self, tmp_path: Path) -> None:
        """A dangling symlink at the path is refused; its target is not created."""
        cfg = _proxy(tmp_path)
        (tmp_path / "enrolment.db").symlink_to(tmp_path / "elsewhere.db")

        result = _invoke(["db", "init", "-c", str(cfg.path)])

        assert result.exit_code == 1
        assert "already exists" in result.stderr
        assert not (tmp_path / "elsewhere.db").exists()

    def test_db_init_creates_a_missing_folder_for_the_owner_only(self, tmp_path: Path) -> None:
        """A database in a folder that does not exist yet gets the folder, mode 0700."""
        cfg = _proxy(tmp_path)
        text = cfg.path.read_text().replace(
            "sqlite:///enrolment.db", "sqlite:///state/enrolment.db"
        )
        cfg.path.write_text(text)

        result = _invoke(["db", "init", "-c", str(cfg.path)])

        assert result.exit_code == 0, result.stderr
        assert _mode(tmp_path / "state") == 0o700
        assert _mode(tmp_path / "state" / "enrolment.db") == 0o600

    def test_db_init_exits_2_when_the_key_file_is_open_to_others(self, tmp_path: Path) -> None:
        """db init reads the key file like every command: a 0644 key stops it, creating nothing."""
        cfg = _proxy(tmp_path)
        (tmp_path / "enrolment.key").chmod(0o644)

        result = _invoke(["db", "init", "-c", str(cfg.path)])

        assert result.exit_code == 2
        assert "enrolment.key_file" in result.stderr
        assert not (tmp_path / "enrolment.db").exists()

    def test_db_init_refuses_a_database_that_is_not_sqlite(self, tmp_path: Path) -> None:
        """For PostgreSQL there is no file to make: exit 2 naming enrolment.database."""
        cfg = _proxy(tmp_path)
        text = cfg.path.read_text().replace(
            'database = "sqlite:///enrolment.db"',
            'database = "postgresql://mfa@127.0.0.1/mfa"',
        )
        cfg.path.write_text(text)

        result = _invoke(["db", "init", "-c", str(cfg.path)])

        assert result.exit_code == 2
        assert f"{cfg.path}: enrolment.database: db init creates SQLite files only" in (
            result.stderr
        )

    def test_db_init_works_under_a_permissive_umask(self, tmp_path: Path) -> None:
        """With umask 000 the database is still 0600 (the mode is set, not left to the umask)."""
        cfg = _proxy(tmp_path)
        previous = os.umask(0)
        try:
            result = _invoke(["db", "init", "-c", str(cfg.path)])
        finally:
            os.umask(previous)

        assert result.exit_code == 0, result.stderr
        assert _mode(tmp_path / "enrolment.db") == 0o600
