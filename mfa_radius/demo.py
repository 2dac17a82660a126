"""The embedded demo: a working configuration and one enrolled user, made in one folder.

``mfa-radius demo`` writes a config listening on 127.0.0.1 with the in-process challenge store,
a fresh random shared secret and encryption key, a SQLite enrolment database, and user
``alice`` with a random password, a TOTP token and a phone number whose texts and calls are
written to ``messages.txt``, so that an admin can try a full login with ``mfa-radius login`` a
minute after installing. Running it again reuses what is there: the first run creates the
database as ``mfa-radius db init`` does (mode 0600, schema, key check), later runs open it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mfa_radius import app, config
from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.argon2_primary import hash_password
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.core import otp

DEMO_USER = "alice"
DEMO_PHONE = "+14155550123"
"""A fictional number (555-01xx): the demo's texts and calls go to ``messages.txt``."""

_CONFIG = """\
# Demo configuration written by `mfa-radius demo`: one node, in-process store, SQLite.
# See radius.conf.example for every key.

[server]
listen = ["127.0.0.1:{port}"]
node_name = "demo"
admin_socket = "admin.sock"

[[client]]
name = "demo-nas"
ipaddr = ["127.0.0.1/32", "::1/128"]
secret_file = "client.secret"

[profile.default]
mode = "challenge"
primary = "local"
# The app's code, or type 1 for a text message / 2 for a call at the prompt: in the demo both
# are written to messages.txt (the file sender stands in for the phone).
factors = ["totp", "sms", "voice"]
sms_sender = "+12025550143"
voice_caller_id = "+12025550143"
organisation = "mfa-radius demo"

[delivery]
sender = "file"
file = "messages.txt"

[store]
backend = "memory"

[enrolment]
database = "sqlite:///enrolment.db"
key_file = "enrolment.key"

[totp]
issuer = "mfa-radius demo"

[log]
level = "info"
format = "console"
"""


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """What the demo set up.

    Attributes:
        config: the configuration file.
        secret_file: the shared secret file for ``mfa-radius login --secret-file``.
        password: alice's password (a demo secret, shown to the admin once per run).
        otpauth_uri: alice's TOTP enrolment URI.
        database: the SQLite enrolment database.
        database_created: this run created the database (the first run).
    """

    config: Path
    secret_file: Path
    password: str
    otpauth_uri: str
    database: Path
    database_created: bool


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, unless it exists."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_files(directory: Path, *, port: int) -> Path:
    """Create the demo folder with its config, secret, key and password files (kept if present).

    Args:
        directory: the folder to use; created when missing.
        port: UDP port to listen on, on 127.0.0.1.

    Returns:
        The configuration file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _write_once(directory / "client.secret", secrets.token_urlsafe(24) + "\n")
    _write_once(directory / "enrolment.key", Keyring.generate_line("demo1") + "\n")
    _write_once(directory / "alice.password", secrets.token_urlsafe(9) + "\n")
    config_file = directory / "radius.conf"
    _write_once(config_file, _CONFIG.format(port=port))
    return config_file


async def open_demo_database(loaded: config.Loaded, *, create: bool) -> SqlEnrolmentStore:
    """Open the demo's database, creating it first (``create``) as ``mfa-radius db init`` does.

    Args:
        loaded: the demo configuration.
        create: the database does not exist yet: create it (mode 0600) with its schema.

    Returns:
        The open store; close it.

    Raises:
        ConfigError: the database is missing and ``create`` is off, or the key is bad.
        AlreadyExists: ``create`` is on and the database exists.
        BackendError: the database cannot be created or opened.
    """
    if not create:
        return await app.open_enrolments(loaded)
    return await SqlEnrolmentStore.open(
        app.database_url(loaded.config.enrolment.database), app.keyring_from(loaded), create=True
    )


async def enrol_demo_user(loaded: config.Loaded, password: str, *, create: bool = False) -> str:
    """Enrol ``alice`` with a password and a TOTP token unless she exists.

    Args:
        loaded: the demo configuration.
        password: alice's password.
        create: create the database first (the demo's first run).

    Returns:
        alice's otpauth URI.
    """
    totp_cfg = loaded.config.totp
    store = await open_demo_database(loaded, create=create)
    try:
        user = await store.find_user(DEMO_USER)
        if user is None:
            await store.add_user(DEMO_USER, display_name="Alice Demo", phone=DEMO_PHONE)
            await store.set_password_hash(DEMO_USER, hash_password(password))
            secret = secrets.token_bytes(20)
            await store.add_totp(
                DEMO_USER,
                secret,
                digits=totp_cfg.otp_length,
                time_step=totp_cfg.time_step,
                algorithm=totp_cfg.algorithm,
            )
        else:
            secret = user.tokens[0].secret
    finally:
        await store.close()
    return otp.provisioning_uri(
        secret,
        username=DEMO_USER,
        issuer=totp_cfg.issuer,
        digits=totp_cfg.otp_length,
        time_step=totp_cfg.time_step,
        algorithm=totp_cfg.algorithm,
    )


def prepare(directory: Path, *, port: int) -> tuple[config.Loaded, DemoFiles]:
    """Write the demo files and enrol the demo user.

    Args:
        directory: the demo folder.
        port: UDP port on 127.0.0.1.

    Returns:
        The loaded configuration and what the admin needs to log in.
    """
    config_file = write_files(directory, port=port)
    loaded = config.load(config_file)
    database = loaded.database_path()
    assert database is not None  # noqa: S101 (the demo config names a SQLite file)
    create = not database.exists()
    password = (directory / "alice.password").read_text(encoding="utf-8").strip()
    uri = asyncio.run(enrol_demo_user(loaded, password, create=create))
    files = DemoFiles(
        config=config_file,
        secret_file=directory / "client.secret",
        password=password,
        otpauth_uri=uri,
        database=database,
        database_created=create,
    )
    return loaded, files
