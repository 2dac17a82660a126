"""The enrolment database: users, their TOTP tokens and local passwords, via SQLAlchemy Core.

Responsibility: implement :class:`mfa_radius.ports.EnrolmentStore` on one code path for
SQLite (``sqlite+aiosqlite``, the single-node default) and PostgreSQL
(``postgresql+asyncpg``, a cluster). Only portable Core constructs are used: no ORM, no
dialect-specific SQL outside the SQLite connection PRAGMAs and the migration lock in
``migrations/env.py``.

Schema: created and changed only by the Alembic revisions in ``mfa_radius.migrations``;
:func:`migrate` applies them at start-up (idempotent). The :data:`metadata` below mirrors the
latest revision for the queries (a test checks that the two agree).

A SQLite database file is never created by accident: SQLite would otherwise create an empty
one for a mistyped or lost path, and an empty enrolment database means password-only logins
(``unenrolled = "accept"``) or every user locked out (``reject``). Only ``create=True`` (the
``mfa-radius db init`` command) makes the file, exclusively and mode 0600; SQLite gives its
``-wal``/``-shm``/``-journal`` files the database file's mode. Every connection opens the file
in SQLite's ``mode=rw``, so a database removed while the proxy runs is an error, never a new
empty file.

Secrets: a TOTP seed is stored as an AES-256-GCM blob (:mod:`.aesgcm_keyring`) whose
associated data names the token and its user, so a blob moved to another row does not decrypt.
A ``key_check`` row per key id holds a known value encrypted with that key: :meth:`check`
decrypts it at start-up so that a lost or wrong key file is a clear start-up error naming the
key id, never a silent reject of every login.

Hot path: :meth:`SqlEnrolmentStore.find_user` runs once per login. It is one statement (users
LEFT OUTER JOIN totp_tokens on the unique username index), built once at import so that
SQLAlchemy's compiled cache serves every call, run on an autocommit *reader* engine (no
BEGIN/ROLLBACK around it), and decrypts tokens in-process (AES-GCM is a few microseconds).
With aiosqlite most of its latency is the hand-off to the connection's worker thread (several
per statement inside SQLAlchemy's adapter), not SQLite; :meth:`SqlEnrolmentStore.find_users`
amortises that over a batch of concurrent logins.

Errors: driver and SQLAlchemy errors become :class:`mfa_radius.errors.EnrolmentUnavailable`
(backend ``"enrolment-db"``) without their text, which may quote a URL with credentials.
Admin operations raise :class:`~mfa_radius.errors.NotFound` and
:class:`~mfa_radius.errors.AlreadyExists`.
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import alembic.command
import alembic.config
import alembic.util
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    event,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.core.model import TotpToken, User
from mfa_radius.errors import (
    AlreadyExists,
    ConfigError,
    EnrolmentUnavailable,
    KeyUnavailable,
    NotFound,
    map_errors,
)

BACKEND = "enrolment-db"
"""The ``backend`` name carried by :class:`EnrolmentUnavailable` from this adapter."""

SCRIPT_LOCATION = "mfa_radius:migrations"
"""Where Alembic finds ``env.py`` and the revisions: inside the package, no alembic.ini."""

ALGORITHMS = frozenset({"sha1", "sha256", "sha512"})
"""TOTP hash functions RFC 6238 §1.2 allows."""

_ERRORS = {
    SQLAlchemyError: EnrolmentUnavailable,
    OSError: EnrolmentUnavailable,
    alembic.util.CommandError: EnrolmentUnavailable,
}
_KEY_CHECK_VALUE = b"mfa-radius key check v1"
_SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")  # files SQLite keeps beside the database
FILE_MODE = 0o600
"""Mode of a database file created here: its owner (the proxy's user) reads and writes it."""
_IN_CHUNK = 500  # usernames per IN (...) list: far below SQLite's and asyncpg's bind limits

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Table definitions matching the latest revision in ``mfa_radius/migrations/versions``."""

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("display_name", String(255), nullable=False, server_default=""),
    Column("email", String(255), nullable=False, server_default=""),
    Column("phone", String(32), nullable=False, server_default=""),
    Column("disabled", Boolean(), nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("language", String(35), nullable=False, server_default=""),
)

totp_tokens = Table(
    "totp_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("secret_enc", Text(), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("digits", Integer(), nullable=False),
    Column("time_step", Integer(), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("serial", String(255), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_totp_tokens_user_id", "user_id"),
    Index("ix_totp_tokens_key_id", "key_id"),
)

passwords = Table(
    "passwords",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("hash", Text(), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

key_check = Table(
    "key_check",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("check_enc", Text(), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Statements are built once: SQLAlchemy caches their compiled form by structure, so the hot
# path pays neither construction nor compilation.
_USER_WITH_TOKENS = (
    select(
        users.c.id,
        users.c.username,
        users.c.display_name,
        users.c.email,
        users.c.phone,
        users.c.disabled,
        totp_tokens.c.id,
        totp_tokens.c.secret_enc,
        totp_tokens.c.digits,
        totp_tokens.c.time_step,
        totp_tokens.c.algorithm,
        totp_tokens.c.serial,
        users.c.language,
    )
    .select_from(users.outerjoin(totp_tokens, totp_tokens.c.user_id == users.c.id))
    .order_by(users.c.username, totp_tokens.c.created_at, totp_tokens.c.id)
)
_FIND_USER = _USER_WITH_TOKENS.where(users.c.username == bindparam("username"))
_FIND_USERS = _USER_WITH_TOKENS.where(users.c.username.in_(bindparam("usernames", expanding=True)))
_PASSWORD_HASH = (
    select(passwords.c.hash)
    .select_from(passwords.join(users, passwords.c.user_id == users.c.id))
    .where(users.c.username == bindparam("username"))
)
_USER_ID = select(users.c.id).where(users.c.username == bindparam("username"))


def _errors() -> AbstractContextManager[None]:
    return map_errors(_ERRORS, backend=BACKEND)


def _now() -> datetime:
    return datetime.now(UTC)


def token_aad(token_id: str, user_id: str) -> bytes:
    """Return the associated data binding a token's secret to its row and its user.

    Args:
        token_id: the token's primary key.
        user_id: the owning user's primary key.

    Returns:
        Bytes that differ for every (token, user) pair.
    """
    return f"totp_tokens\x00{token_id}\x00{user_id}".encode()


def _key_check_aad(key_id: str) -> bytes:
    return f"key_check\x00{key_id}".encode()


async def migrate(url: str, *, create: bool = False) -> None:
    """Bring the database at ``url`` to the latest schema revision.

    Safe on every start-up: a database already at the head is left alone. Uses its own
    short-lived engine; :meth:`SqlEnrolmentStore.open` migrates through its own engine instead.

    Args:
        url: SQLAlchemy async URL (``sqlite+aiosqlite:///path``, ``postgresql+asyncpg://...``).
        create: create the SQLite file first (mode 0600); it must not exist yet.

    Raises:
        ConfigError: the SQLite file does not exist and ``create`` is off.
        AlreadyExists: ``create`` is on and the SQLite file exists.
        EnrolmentUnavailable: the database (or, for SQLite, its directory) cannot be opened,
            or a revision fails.
    """
    created = _prepare_file(url, create=create)
    try:
        engine = _create_engine(
            url, reader=False, pool_size=1, max_overflow=0, pool_timeout=30.0, busy_timeout=5.0
        )
        try:
            await _upgrade_head(engine)
        finally:
            await engine.dispose()
    except BaseException:
        _remove_created(created)
        raise


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another engine or an in-memory database.

    A URL already in SQLite's own URI form (``?uri=true``) is the caller's to manage: None.

    Args:
        url: SQLAlchemy URL.

    Returns:
        The database file as the URL names it (a relative path is relative to the working
        directory, as SQLite takes it).

    Raises:
        EnrolmentUnavailable: the URL is malformed.
    """
    with _errors():
        parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri") == "true":
        return None
    if parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _prepare_file(url: str, *, create: bool) -> Path | None:
    """Create the SQLite file (``create``) or make sure it exists; return the file created.

    Raises:
        ConfigError: the file does not exist and ``create`` is off.
        AlreadyExists: ``create`` is on and the file (or anything by that name) exists.
        EnrolmentUnavailable: the directory is missing, or the file cannot be created.
    """
    path = sqlite_file(url)
    if path is None:
        return None
    if not create:
        try:
            path.stat()  # follows a symlink: a dangling one is a missing database
        except (FileNotFoundError, NotADirectoryError):
            raise ConfigError(
                f"the enrolment database {path} does not exist; create it with "
                "`mfa-radius db init -c CONFIG` (a missing database is never created at "
                "start-up: it would hold no enrolments)"
            ) from None
        except OSError as exc:
            raise EnrolmentUnavailable(
                BACKEND, f"cannot look at {str(path)!r}: {exc.strerror or type(exc).__name__}"
            ) from None
        return None
    _check_directory(path)
    try:
        # O_EXCL: never overwrite a database, and never follow a symlink planted at the path.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        raise AlreadyExists(
            f"the enrolment database {path} already exists; it was left as it is"
        ) from None
    except OSError as exc:
        raise EnrolmentUnavailable(
            BACKEND, f"cannot create {str(path)!r}: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600 whatever the umask (0277 would give 0400)
    finally:
        os.close(fd)
    return path


def _check_directory(path: Path) -> None:
    """Refuse a database path whose directory is missing, naming that directory.

    Checked before SQLite is asked because it only says "unable to open database file", and
    because a failed aiosqlite connect leaves its worker thread to finish later.
    """
    directory = path.parent
    if not directory.is_dir():
        raise EnrolmentUnavailable(
            BACKEND, f"the database directory {str(directory)!r} does not exist"
        )


def _private_siblings(path: Path | None) -> None:
    """Make the files SQLite keeps beside a database created here owner-only too.

    SQLite already creates them with the database file's mode; this is the second lock on
    that door, for builds that do not.
    """
    if path is None:
        return
    for suffix in _SQLITE_SIBLINGS:
        sibling = path.with_name(path.name + suffix)
        try:
            sibling.chmod(FILE_MODE)
        except FileNotFoundError:
            continue


def _remove_created(path: Path | None) -> None:
    """Remove a database file (and its siblings) this call created, after a failure."""
    if path is None:
        return
    for suffix in ("", *_SQLITE_SIBLINGS):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


async def _upgrade_head(engine: AsyncEngine) -> None:
    with _errors():
        async with engine.begin() as conn:
            await conn.run_sync(_run_alembic_upgrade)


def _run_alembic_upgrade(connection: Connection) -> None:
    config = alembic.config.Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    alembic.command.upgrade(config, "head")


def _create_engine(
    url: str,
    *,
    reader: bool,
    pool_size: int,
    max_overflow: int,
    pool_timeout: float,
    busy_timeout: float,
) -> AsyncEngine:
    """Create an engine; a *reader* engine runs every statement in autocommit mode.

    Why readers autocommit: each lookup is one SELECT, which is consistent on its own, and
    without a transaction there is no BEGIN/ROLLBACK around it. On PostgreSQL that saves two
    round trips per login; with aiosqlite it saves the ROLLBACK on every pool check-in, one
    hop to the connection's thread (``skip_autocommit_rollback``).
    """
    with _errors():  # a malformed URL or an unknown driver name is an ArgumentError
        parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    options: dict[str, Any] = (
        {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True} if reader else {}
    )
    file = sqlite_file(url)
    if file is not None:
        _check_directory(file)
        parsed = _open_existing_only(parsed, file)
    with _errors():
        if sqlite and parsed.database in (None, "", ":memory:"):
            # One shared connection, or each checkout would see its own empty database.
            engine = create_async_engine(parsed, poolclass=StaticPool, **options)
        else:
            engine = create_async_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
                **options,
            )
    if sqlite:
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
            # WAL: logins read while an admin writes. foreign_keys: SQLite enforces them (and
            # ON DELETE CASCADE) only when asked, per connection. busy_timeout: wait for a
            # writer's lock instead of failing at once with "database is locked".
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            finally:
                cursor.close()

    return engine


def _open_existing_only(parsed: URL, file: Path) -> URL:
    """The same SQLite database as a URI in ``mode=rw``: SQLite opens it, never creates it.

    Without it every new pooled connection would create an empty database in place of one
    removed while the proxy runs (``sqlite3_open_v2`` without ``SQLITE_OPEN_CREATE``).
    """
    return parsed.set(
        database="file:" + quote(str(file.absolute())),
        query={**parsed.query, "mode": "rw", "uri": "true"},
    )


class SqlEnrolmentStore:
    """:class:`mfa_radius.ports.EnrolmentStore` on SQLAlchemy Core async.

    Build it with :meth:`open`; the constructor only wires engines that are already set up.
    Lookups use an autocommit *reader* engine (one statement per round trip, see
    ``_create_engine``); admin operations use a *writer* engine with real transactions.

    Args:
        reader: an engine created in autocommit mode, for single-statement reads.
        writer: an engine with transactions, for admin operations and start-up checks.
        keyring: the keys that encrypt and decrypt token secrets.
    """

    def __init__(self, reader: AsyncEngine, writer: AsyncEngine, keyring: Keyring) -> None:
        self._reader = reader
        self._writer = writer
        self._keyring = keyring

    @classmethod
    async def open(
        cls,
        url: str,
        keyring: Keyring,
        *,
        create: bool = False,
        migrate: bool = True,
        verify: bool = True,
        pool_size: int = 5,
        max_overflow: int = 5,
        pool_timeout: float = 5.0,
        busy_timeout: float = 5.0,
    ) -> SqlEnrolmentStore:
        """Connect, migrate, register the current key and prove the key file.

        A SQLite file must exist unless ``create`` is on; with ``create`` it must not exist, and
        is created mode 0600 (the ``mfa-radius db init`` command). Nothing else creates it.

        Args:
            url: SQLAlchemy async URL (``sqlite+aiosqlite:///path``, ``postgresql+asyncpg://...``).
            keyring: the keys for token secrets; its current key encrypts new tokens.
            create: create the SQLite database file (mode 0600) and its schema; refused when
                the file exists. Ignored for other engines.
            migrate: apply pending Alembic revisions first (idempotent).
            verify: run :meth:`check` before returning, so a store that opened is known to
                decrypt what it holds.
            pool_size: reader connections kept open (each SQLite connection has its own
                thread); the writer keeps one.
            max_overflow: extra reader connections allowed under load.
            pool_timeout: seconds to wait for a free connection.
            busy_timeout: seconds SQLite waits for another writer's lock.

        Returns:
            A ready store; :meth:`close` it.

        Raises:
            ConfigError: the SQLite file does not exist and ``create`` is off (a start-up
                error naming the path; the CLI exits 2).
            AlreadyExists: ``create`` is on and the SQLite file exists (it is left alone).
            EnrolmentUnavailable: the database cannot be opened, migrated or written.
            KeyUnavailable: ``verify`` is on and the key file does not decrypt stored secrets.
        """
        created = _prepare_file(url, create=create)
        try:
            store = cls._connect(url, keyring, pool_size, max_overflow, pool_timeout, busy_timeout)
        except BaseException:
            _remove_created(created)
            raise
        try:
            if migrate or create:
                await _upgrade_head(store._writer)
            _private_siblings(created)
            await store._register_current_key()
            if verify:
                await store.check()
        except BaseException:
            await store.close()
            _remove_created(created)
            raise
        return store

    @classmethod
    def _connect(
        cls,
        url: str,
        keyring: Keyring,
        pool_size: int,
        max_overflow: int,
        pool_timeout: float,
        busy_timeout: float,
    ) -> SqlEnrolmentStore:
        """Build the writer and reader engines (no connection is made yet)."""
        writer = _create_engine(
            url,
            reader=False,
            pool_size=1,
            max_overflow=2,
            pool_timeout=pool_timeout,
            busy_timeout=busy_timeout,
        )
        reader = _create_engine(
            url,
            reader=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            busy_timeout=busy_timeout,
        )
        return cls(reader, writer, keyring)

    async def _register_current_key(self) -> None:
        """Store the key-check value of the current key if this database has none yet."""
        key_id = self._keyring.current_key_id
        with _errors():
            async with self._writer.connect() as conn:
                found = await conn.execute(
                    select(key_check.c.key_id).where(key_check.c.key_id == key_id)
                )
                if found.first() is not None:
                    return
            blob = self._keyring.encrypt(_KEY_CHECK_VALUE, aad=_key_check_aad(key_id))
            try:
                async with self._writer.begin() as conn:
                    await conn.execute(
                        insert(key_check).values(key_id=key_id, check_enc=blob, created_at=_now())
                    )
            except IntegrityError:
                return  # another node registered it first; check() verifies theirs

    # -- hot path -------------------------------------------------------------------------

    async def find_user(self, username: str) -> User | None:
        """Return the user with their decrypted tokens, or None when not enrolled.

        One statement, one round trip: users LEFT OUTER JOIN totp_tokens.

        Args:
            username: the normalised login name, compared exactly.

        Returns:
            The user, or None.

        Raises:
            EnrolmentUnavailable: the database cannot be read, or a stored secret does not
                decrypt with the key file (the detail names the key id).
        """
        with _errors():
            async with self._reader.connect() as conn:
                rows = (await conn.execute(_FIND_USER, {"username": username})).all()
        if not rows:
            return None
        return next(self._assemble(rows))

    async def find_users(self, usernames: Sequence[str]) -> dict[str, User]:
        """Look up many users at once (to coalesce concurrent logins into one query).

        Args:
            usernames: normalised login names; duplicates are fine.

        Returns:
            username -> user, for the names that are enrolled.

        Raises:
            EnrolmentUnavailable: as :meth:`find_user`.
        """
        wanted = sorted(set(usernames))
        if not wanted:
            return {}
        rows: list[Sequence[Any]] = []
        with _errors():
            async with self._reader.connect() as conn:
                for start in range(0, len(wanted), _IN_CHUNK):
                    chunk = wanted[start : start + _IN_CHUNK]
                    result = await conn.execute(_FIND_USERS, {"usernames": chunk})
                    rows.extend(result.all())
        return {user.username: user for user in self._assemble(rows)}

    async def get_password_hash(self, username: str) -> str | None:
        """Return the user's argon2id hash for the local primary backend.

        Args:
            username: the normalised login name.

        Returns:
            The PHC-format hash, or None when the user or their password does not exist.

        Raises:
            EnrolmentUnavailable: the database cannot be read.
        """
        with _errors():
            async with self._reader.connect() as conn:
                row = (await conn.execute(_PASSWORD_HASH, {"username": username})).first()
        return None if row is None else str(row[0])

    def _assemble(self, rows: Sequence[Sequence[Any]]) -> Iterator[User]:
        """Fold joined rows (ordered by user) into users with decrypted tokens."""
        current: list[Any] | None = None
        tokens: list[TotpToken] = []
        for row in rows:
            (user_id, username, display_name, email, phone, disabled) = row[:6]
            if current is None or current[0] != user_id:
                if current is not None:
                    yield _user(current, tokens)
                language = row[12]
                current = [user_id, username, display_name, email, phone, disabled, language]
                tokens = []
            token_id = row[6]
            if token_id is not None:
                tokens.append(self._token(row, str(user_id)))
        if current is not None:
            yield _user(current, tokens)

    def _token(self, row: Sequence[Any], user_id: str) -> TotpToken:
        token_id = str(row[6])
        try:
            secret = self._keyring.decrypt(str(row[7]), aad=token_aad(token_id, user_id))
        except KeyUnavailable as exc:
            # At request time this is a backend failure for the fail mode to judge; check()
            # reports the same cause as a start-up error.
            raise EnrolmentUnavailable(BACKEND, str(exc)) from exc
        return TotpToken(
            token_id=token_id,
            secret=secret,
            digits=int(row[8]),
            time_step=int(row[9]),
            algorithm=str(row[10]),
            serial=str(row[11]),
        )

    # -- administration ---------------------------------------------------------------------

    async def add_user(
        self,
        username: str,
        *,
        display_name: str = "",
        email: str = "",
        phone: str = "",
        language: str = "",
    ) -> User:
        """Create a user without factors or password.

        Args:
            username: the normalised login name (stored as given).
            display_name: for the audit line.
            email: for the audit line.
            phone: E.164 number or empty.
            language: spoken language of calls (``de-DE``); empty for the profile's.

        Returns:
            The new user.

        Raises:
            AlreadyExists: the username is taken.
            EnrolmentUnavailable: the database cannot be written.
        """
        user = User(
            user_id=str(uuid.uuid4()),
            username=username,
            display_name=display_name,
            email=email,
            phone=phone,
            language=language,
        )
        with _errors():
            try:
                async with self._writer.begin() as conn:
                    await conn.execute(
                        insert(users).values(
                            id=user.user_id,
                            username=username,
                            display_name=display_name,
                            email=email,
                            phone=phone,
                            language=language,
                            disabled=False,
                            created_at=_now(),
                        )
                    )
            except IntegrityError as exc:
                raise AlreadyExists(f"user {username!r} already exists") from exc
        return user

    async def list_users(self) -> list[User]:
        """Return every user with their tokens, ordered by username.

        Returns:
            The users.

        Raises:
            EnrolmentUnavailable: the database cannot be read, or a secret does not decrypt.
        """
        with _errors():
            async with self._writer.connect() as conn:
                rows = (await conn.execute(_USER_WITH_TOKENS)).all()
        return list(self._assemble(rows))

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable or enable a user (a disabled user is rejected after the primary check).

        Args:
            username: the normalised login name.
            disabled: the new state.

        Raises:
            NotFound: no such user.
            EnrolmentUnavailable: the database cannot be written.
        """
        with _errors():
            async with self._writer.begin() as conn:
                result = await conn.execute(
                    update(users).where(users.c.username == username).values(disabled=disabled)
                )
                if result.rowcount == 0:
                    raise NotFound(f"user {username!r} is not enrolled")

    async def update_user(
        self,
        username: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        language: str | None = None,
    ) -> None:
        """Change a user's contact details and call language (None leaves a field as it is).

        Args:
            username: the normalised login name.
            display_name: the new display name.
            email: the new e-mail address.
            phone: the new E.164 number ("" removes it).
            language: the new call language ("" for the profile's).

        Raises:
            NotFound: no such user.
            EnrolmentUnavailable: the database cannot be written.
        """
        changes = (
            ("display_name", display_name),
            ("email", email),
            ("phone", phone),
            ("language", language),
        )
        values = {name: value for name, value in changes if value is not None}
        if not values:
            return
        with _errors():
            async with self._writer.begin() as conn:
                result = await conn.execute(
                    update(users).where(users.c.username == username).values(**values)
                )
                if result.rowcount == 0:
                    raise NotFound(f"user {username!r} is not enrolled")

    async def remove_user(self, username: str) -> None:
        """Delete a user; their tokens and password go with them (ON DELETE CASCADE).

        Args:
            username: the normalised login name.

        Raises:
            NotFound: no such user.
            EnrolmentUnavailable: the database cannot be written.
        """
        with _errors():
            async with self._writer.begin() as conn:
                result = await conn.execute(delete(users).where(users.c.username == username))
                if result.rowcount == 0:
                    raise NotFound(f"user {username!r} is not enrolled")

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Set or replace the user's local primary password.

        Args:
            username: the normalised login name.
            password_hash: an argon2id PHC string (see ``argon2_primary.hash_password``).

        Raises:
            NotFound: no such user.
            EnrolmentUnavailable: the database cannot be written.
        """
        with _errors():
            async with self._writer.begin() as conn:
                user_id = await _user_id(conn, username)
                result = await conn.execute(
                    update(passwords)
                    .where(passwords.c.user_id == user_id)
                    .values(hash=password_hash, updated_at=_now())
                )
                if result.rowcount == 0:
                    await conn.execute(
                        insert(passwords).values(
                            user_id=user_id, hash=password_hash, updated_at=_now()
                        )
                    )

    async def add_totp(
        self,
        username: str,
        secret: bytes,
        *,
        digits: int = 6,
        time_step: int = 30,
        algorithm: str = "sha1",
        serial: str = "",
    ) -> TotpToken:
        """Enrol a TOTP token, encrypting its secret with the current key.

        Args:
            username: the normalised login name.
            secret: the raw shared secret (not base32).
            digits: code length, 6 to 8 (RFC 4226 §5.3).
            time_step: seconds per step (RFC 6238 §4.1 X).
            algorithm: ``sha1``, ``sha256`` or ``sha512`` (RFC 6238 §1.2).
            serial: a hardware token's serial, or empty.

        Returns:
            The enrolled token (with its secret).

        Raises:
            ValueError: a parameter is out of range (the message never quotes the secret).
            NotFound: no such user.
            EnrolmentUnavailable: the database cannot be written.
        """
        if not secret:
            raise ValueError("the TOTP secret is empty")
        if not 6 <= digits <= 8:
            raise ValueError(f"digits must be 6 to 8, not {digits}")
        if time_step < 1:
            raise ValueError(f"time_step must be at least 1 second, not {time_step}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, not {algorithm!r}")
        token = TotpToken(
            token_id=str(uuid.uuid4()),
            secret=secret,
            digits=digits,
            time_step=time_step,
            algorithm=algorithm,
            serial=serial,
        )
        with _errors():
            async with self._writer.begin() as conn:
                user_id = await _user_id(conn, username)
                blob = self._keyring.encrypt(secret, aad=token_aad(token.token_id, user_id))
                await conn.execute(
                    insert(totp_tokens).values(
                        id=token.token_id,
                        user_id=user_id,
                        secret_enc=blob,
                        key_id=self._keyring.current_key_id,
                        digits=digits,
                        time_step=time_step,
                        algorithm=algorithm,
                        serial=serial,
                        created_at=_now(),
                    )
                )
        return token

    async def remove_tokens(self, username: str) -> int:
        """Delete every token of a user.

        Args:
            username: the normalised login name.

        Returns:
            How many tokens were removed.

        Raises:
            NotFound: no such user.
            EnrolmentUnavailable: the database cannot be written.
        """
        with _errors():
            async with self._writer.begin() as conn:
                user_id = await _user_id(conn, username)
                result = await conn.execute(
                    delete(totp_tokens).where(totp_tokens.c.user_id == user_id)
                )
                return int(result.rowcount)

    async def reencrypt_secrets(self) -> int:
        """Re-encrypt every secret held under an older key with the current key.

        The last step of a key rotation: afterwards :meth:`check` no longer needs the old
        keys, and they can be removed from the key file.

        Returns:
            How many secrets were re-encrypted.

        Raises:
            KeyUnavailable: an old secret does not decrypt with the key file.
            EnrolmentUnavailable: the database cannot be read or written.
        """
        current = self._keyring.current_key_id
        count = 0
        with _errors():
            async with self._writer.begin() as conn:
                result = await conn.execute(
                    select(totp_tokens.c.id, totp_tokens.c.user_id, totp_tokens.c.secret_enc).where(
                        totp_tokens.c.key_id != current
                    )
                )
                for token_id, user_id, blob in result.all():
                    aad = token_aad(str(token_id), str(user_id))
                    secret = self._keyring.decrypt(str(blob), aad=aad)
                    await conn.execute(
                        update(totp_tokens)
                        .where(totp_tokens.c.id == token_id)
                        .values(secret_enc=self._keyring.encrypt(secret, aad=aad), key_id=current)
                    )
                    count += 1
        return count

    # -- lifecycle ------------------------------------------------------------------------

    async def check(self) -> None:
        """Prove that the database answers and the key file decrypts every stored secret.

        Every key id that a token uses must be in the key file, and every key id of the key
        file that has a key-check value must decrypt it (a key id present with the wrong key).

        Raises:
            KeyUnavailable: a needed key id is missing from the key file, or a key does not
                decrypt its key-check value; the message names the key id.
            EnrolmentUnavailable: the database cannot be read.
        """
        with _errors():
            async with self._writer.connect() as conn:
                used = (
                    await conn.execute(
                        select(totp_tokens.c.key_id, func.count()).group_by(totp_tokens.c.key_id)
                    )
                ).all()
                checks = (
                    await conn.execute(select(key_check.c.key_id, key_check.c.check_enc))
                ).all()
                unchecked = {str(key_id) for key_id, _ in used} - {str(k) for k, _ in checks}
                samples: list[Sequence[Any]] = []
                for key_id in sorted(unchecked):
                    sample = await conn.execute(
                        select(totp_tokens.c.id, totp_tokens.c.user_id, totp_tokens.c.secret_enc)
                        .where(totp_tokens.c.key_id == key_id)
                        .limit(1)
                    )
                    samples.extend(sample.all())
        known = self._keyring.key_ids
        for key_id, count in sorted(used):
            if key_id not in known:
                raise KeyUnavailable(
                    f"key id {key_id!r} is not in the key file"
                    f" ({count} stored TOTP secrets are encrypted with it)"
                )
        for key_id, blob in checks:
            if key_id in known:
                value = self._keyring.decrypt(str(blob), aad=_key_check_aad(str(key_id)))
                if not hmac.compare_digest(value, _KEY_CHECK_VALUE):
                    raise KeyUnavailable(f"key id {key_id!r} does not decrypt its check value")
        for token_id, user_id, blob in samples:
            self._keyring.decrypt(str(blob), aad=token_aad(str(token_id), str(user_id)))

    async def close(self) -> None:
        """Close every pooled connection (and each SQLite connection's thread)."""
        try:
            await self._reader.dispose()
        finally:
            await self._writer.dispose()


async def _user_id(conn: AsyncConnection, username: str) -> str:
    row = (await conn.execute(_USER_ID, {"username": username})).first()
    if row is None:
        raise NotFound(f"user {username!r} is not enrolled")
    return str(row[0])


def _user(fields: Sequence[Any], tokens: Sequence[TotpToken]) -> User:
    user_id, username, display_name, email, phone, disabled, language = fields
    return User(
        user_id=str(user_id),
        username=str(username),
        display_name=str(display_name),
        email=str(email),
        phone=str(phone),
        disabled=bool(disabled),
        tokens=tuple(tokens),
        language=str(language),
    )
