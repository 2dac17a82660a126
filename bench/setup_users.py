"""Create many benchmark users in a proxy's enrolment database, and the users CSV for the load.

A TOTP code is good once per token and time step, so a load of R logins/s needs about
R x 30 users (3,000 logins/s: 90,000 users). Enrolling them one by one through the admin API
(one transaction per user and per token) would take minutes, so this script writes the same
rows in bulk: it opens the database through :meth:`SqlEnrolmentStore.open` (migrations and the
key-check row, exactly as the proxy does at start-up), then inserts ``users``,
``totp_tokens`` and ``passwords`` with multi-row statements in one transaction. Token secrets
are encrypted with the proxy's own :class:`Keyring` and associated data
(:func:`token_aad`), so the proxy decrypts them on its hot path exactly as for users enrolled
by ``mfa-radius totp add``.

Every user gets the same password and the same argon2id hash: hashing costs tens of
milliseconds per user (100,000 users: over an hour), while a verify costs the same whatever
the hash, which is all the ``local`` primary benchmark needs.

With ``phones`` (the ``*-sms`` scenarios, ``--phones``) each user instead gets its own valid
E.164 number (:func:`phone_number`: +1 415 2xx xxxx, a million valid US numbers, each checked
with ``phonenumbers.is_valid_number``) in ``users.phone`` and no TOTP token, and the CSV gains
the number as a fourth column (the TOTP secret column is left empty).

Usage::

    python -m bench.setup_users -c radius.conf --users 100000 --out users.csv [--phones]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_radius import app, config
from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.argon2_primary import hash_password
from mfa_radius.adapters.sql_enrolments import (
    SqlEnrolmentStore,
    passwords,
    token_aad,
    totp_tokens,
    users,
)

BATCH = 5_000
"""Rows per INSERT round trip: large enough to amortise the driver, small enough for memory."""

DEFAULT_PASSWORD = "bench-password-1"
"""The primary password of every benchmark user."""

MAX_PHONE_USERS = 1_000_000
"""How many distinct numbers :func:`phone_number` has."""


@dataclass(frozen=True, slots=True)
class SetupResult:
    """What :func:`create_users` did.

    Attributes:
        users: users written to the CSV (created now or found from an earlier run).
        created: users inserted by this call.
        seconds: wall time taken.
    """

    users: int
    created: int
    seconds: float


def username(index: int) -> str:
    """The login name of benchmark user ``index`` (lower case: the proxy folds case)."""
    return f"bench{index:07d}"


def phone_number(index: int) -> str:
    """The E.164 number of benchmark user ``index``: +1 415 2xx xxxx (San Francisco).

    Raises:
        ValueError: ``index`` is out of range, or phonenumbers does not accept the number
            (the proxy would refuse to text it).
    """
    if not 0 <= index < MAX_PHONE_USERS:
        raise ValueError(f"only {MAX_PHONE_USERS} benchmark phone numbers exist")
    number = f"+14152{index:06d}"
    if not phonenumbers.is_valid_number(phonenumbers.parse(number)):
        raise ValueError(f"{number} is not a valid number for phonenumbers")
    return number


async def _existing_count(store_url: str) -> int:
    engine = create_async_engine(store_url)
    try:
        async with engine.connect() as conn:
            value = (await conn.execute(select(func.count()).select_from(users))).scalar_one()
    finally:
        await engine.dispose()
    return int(value)


async def _prepare(url: str, keyring: Keyring, *, create: bool) -> int:
    """Create or migrate the database and register the key as the proxy does; count the users."""
    store = await SqlEnrolmentStore.open(url, keyring, verify=False, create=create)
    await store.close()
    return await _existing_count(url)


async def _insert(
    store_url: str, rows: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    user_rows, token_rows, password_rows = rows
    engine = create_async_engine(store_url)
    try:
        async with engine.begin() as conn:
            for table, table_rows in (
                (users, user_rows),
                (totp_tokens, token_rows),
                (passwords, password_rows),
            ):
                for start in range(0, len(table_rows), BATCH):
                    await conn.execute(insert(table), table_rows[start : start + BATCH])
    finally:
        await engine.dispose()


def create_users(
    config_path: Path,
    count: int,
    csv_path: Path,
    *,
    password: str = DEFAULT_PASSWORD,
    phones: bool = False,
) -> SetupResult:
    """Enrol ``count`` users (TOTP token and local password each) and write the users CSV.

    Users are named ``bench0000000`` ... and created only when the database holds fewer than
    ``count`` users; the CSV always lists ``count`` users. Rerunning against a database
    created by this script therefore keeps its users, but their secrets are only known from
    the CSV written when they were created, so keep the two together.

    Args:
        config_path: the proxy configuration (enrolment database and key file).
        count: how many users the CSV must list.
        csv_path: where to write ``username,password,base32 secret`` lines.
        password: every user's primary password.
        phones: give each user its own phone number (:func:`phone_number`) instead of a
            TOTP token; the CSV lines become ``username,password,,phone``.

    Returns:
        What was done and how long it took.

    Raises:
        RuntimeError: the database already holds users this script did not write to the CSV.
    """
    started = time.perf_counter()
    loaded = config.load(config_path)
    keyring = app.keyring_from(loaded)
    db_path = loaded.database_path()
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    url = app.database_url(loaded.config.enrolment.database)
    existing = asyncio.run(
        _prepare(url, keyring, create=db_path is not None and not db_path.exists())
    )
    if existing and not csv_path.exists():
        raise RuntimeError(
            f"{existing} users exist but {csv_path} does not: their TOTP secrets are unknown"
        )
    if existing >= count:
        return SetupResult(users=count, created=0, seconds=time.perf_counter() - started)
    if existing:
        raise RuntimeError(f"the database holds {existing} users, fewer than {count}: recreate it")

    password_hash = hash_password(password)
    now = datetime.now(UTC)
    key_id = keyring.current_key_id
    user_rows: list[dict[str, Any]] = []
    token_rows: list[dict[str, Any]] = []
    password_rows: list[dict[str, Any]] = []
    lines: list[tuple[str, ...]] = []
    for index in range(count):
        name = username(index)
        user_id = str(uuid.uuid4())
        token_id = str(uuid.uuid4())
        phone = phone_number(index) if phones else ""
        user_rows.append(
            {
                "id": user_id,
                "username": name,
                "display_name": f"Bench User {index}",
                "email": f"{name}@example.org",
                "phone": phone,
                "disabled": False,
                "created_at": now,
            }
        )
        password_rows.append({"user_id": user_id, "hash": password_hash, "updated_at": now})
        if phones:
            lines.append((name, password, "", phone))
            continue
        secret = secrets.token_bytes(20)
        token_rows.append(
            {
                "id": token_id,
                "user_id": user_id,
                "secret_enc": keyring.encrypt(secret, aad=token_aad(token_id, user_id)),
                "key_id": key_id,
                "digits": 6,
                "time_step": 30,
                "algorithm": "sha1",
                "serial": "",
                "created_at": now,
            }
        )
        lines.append((name, password, base64.b32encode(secret).decode("ascii")))
    asyncio.run(_insert(url, (user_rows, token_rows, password_rows)))
    write_users_csv(csv_path, lines)
    return SetupResult(users=count, created=count, seconds=time.perf_counter() - started)


def write_users_csv(path: Path, lines: list[tuple[str, ...]]) -> None:
    """Write the users file the load generator reads (``username,password,base32 secret``).

    SMS users' lines are ``username,password,,phone`` (no TOTP secret).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-c", "--config", type=Path, required=True, help="proxy configuration")
    parser.add_argument("--users", type=int, default=100_000, help="how many users")
    parser.add_argument("--out", type=Path, required=True, help="users CSV to write")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="every user's password")
    parser.add_argument(
        "--phones", action="store_true", help="a phone number per user instead of a TOTP token"
    )
    args = parser.parse_args(argv)
    result = create_users(
        args.config, args.users, args.out, password=args.password, phones=args.phones
    )
    print(
        f"{result.users} users in {args.out} ({result.created} created) in {result.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
