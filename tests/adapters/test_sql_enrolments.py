from __future__ import annotations

import asyncio
import base64
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import alembic.command
import alembic.config
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.sql_enrolments import (
    SCRIPT_LOCATION,
    SqlEnrolmentStore,
    metadata,
    migrate,
    passwords,
    totp_tokens,
)
from mfa_radius.errors import (
    AlreadyExists,
    ConfigError,
    EnrolmentUnavailable,
    KeyUnavailable,
    NotFound,
)

SECRET = b"12345678901234567890"
SECRET_2 = b"abcdefghijabcdefghij"
KEY_1 = f"k1 {base64.b64encode(bytes(range(32))).decode()}"
KEY_1_WRONG = f"k1 {base64.b64encode(bytes(range(1, 33))).decode()}"
KEY_2 = f"k2 {base64.b64encode(bytes(range(64, 96))).decode()}"


def keyring(*lines: str) -> Keyring:
    return Keyring.from_text("\n".join(lines), source="keys")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'enrolments.db'}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[SqlEnrolmentStore]:
    opened = await SqlEnrolmentStore.open(url, keyring(KEY_1), create=True)
    yield opened
    await opened.close()


@pytest.fixture
async def raw(url: str, store: SqlEnrolmentStore) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same file, to look at and damage what the store wrote."""
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


async def reopen(url: str, ring: Keyring, *, verify: bool = True) -> SqlEnrolmentStore:
    return await SqlEnrolmentStore.open(url, ring, verify=verify)


def _modes(directory: Path) -> dict[str, int]:
    """Each file in ``directory`` with its permission bits."""
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def _remove_database(path: Path) -> None:
    """Delete a SQLite file and the -wal/-shm files beside it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _versions(url: str) -> list[str]:
    """The revisions recorded in the database at ``url`` (Alembic's version table)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    return [str(row[0]) for row in rows]


def _head_revision() -> str:
    """The newest revision shipped in mfa_radius/migrations."""
    config = alembic.config.Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


class TestMigrate:
    async def test_migrate_is_idempotent(self, url: str) -> None:
        """Migrating an up-to-date database again changes nothing and raises nothing."""
        await migrate(url, create=True)
        await migrate(url)
        assert await _versions(url) == [_head_revision()]

    async def test_migrated_schema_matches_table_definitions(self, url: str) -> None:
        """The revisions build exactly the tables the queries are written against."""
        await migrate(url, create=True)

        def diff(conn: Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))

        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                assert await conn.run_sync(diff) == []
        finally:
            await engine.dispose()

    async def test_migrate_raises_enrolment_unavailable_when_directory_missing(
        self, tmp_path: Path
    ) -> None:
        """A database path in a directory that does not exist is an EnrolmentUnavailable."""
        with pytest.raises(EnrolmentUnavailable):
            await migrate(
                f"sqlite+aiosqlite:///{tmp_path / 'absent' / 'enrolments.db'}", create=True
            )

    async def test_migrate_refuses_a_missing_database_without_creating_it(
        self, tmp_path: Path
    ) -> None:
        """Without create, a missing SQLite file is a ConfigError naming it; none is made."""
        path = tmp_path / "enrolments.db"
        with pytest.raises(ConfigError, match=f"{path} does not exist"):
            await migrate(f"sqlite+aiosqlite:///{path}")
        assert _modes(tmp_path) == {}


class TestOpen:
    async def test_open_raises_enrolment_unavailable_when_directory_missing(
        self, tmp_path: Path
    ) -> None:
        """Creating a database in a missing directory fails naming that directory."""
        with pytest.raises(EnrolmentUnavailable) as caught:
            await SqlEnrolmentStore.open(
                f"sqlite+aiosqlite:///{tmp_path / 'absent' / 'e.db'}", keyring(KEY_1), create=True
            )
        assert caught.value.backend == "enrolment-db"
        assert str(tmp_path / "absent") in str(caught.value)

    async def test_open_raises_enrolment_unavailable_when_file_is_not_a_database(
        self, tmp_path: Path
    ) -> None:
        """A file that is not SQLite is an EnrolmentUnavailable, not a driver error."""
        path = tmp_path / "enrolments.db"
        path.write_bytes(b"this is not a database file" * 100)
        with pytest.raises(EnrolmentUnavailable):
            await reopen(f"sqlite+aiosqlite:///{path}", keyring(KEY_1))

    async def test_open_raises_enrolment_unavailable_when_not_migrated(self, url: str) -> None:
        """With migration off, an empty database is an EnrolmentUnavailable."""
        os.close(os.open(url.removeprefix("sqlite+aiosqlite:///"), os.O_CREAT | os.O_WRONLY, 0o600))
        with pytest.raises(EnrolmentUnavailable):
            await SqlEnrolmentStore.open(url, keyring(KEY_1), migrate=False)


class TestCreate:
    async def test_open_refuses_a_missing_database_naming_its_path(self, tmp_path: Path) -> None:
        """A missing SQLite file is a ConfigError naming it, and the file is not created."""
        path = tmp_path / "enrolments.db"
        with pytest.raises(ConfigError) as caught:
            await SqlEnrolmentStore.open(f"sqlite+aiosqlite:///{path}", keyring(KEY_1))
        assert f"the enrolment database {path} does not exist" in str(caught.value)
        assert "mfa-radius db init" in str(caught.value)
        assert _modes(tmp_path) == {}

    async def test_open_refuses_a_missing_database_in_a_missing_directory(
        self, tmp_path: Path
    ) -> None:
        """Without create, a missing directory is a missing database too (a ConfigError)."""
        path = tmp_path / "absent" / "e.db"
        with pytest.raises(ConfigError, match=f"{path} does not exist"):
            await SqlEnrolmentStore.open(f"sqlite+aiosqlite:///{path}", keyring(KEY_1))

    async def test_open_refuses_a_symlink_to_a_missing_file_and_creates_no_target(
        self, tmp_path: Path
    ) -> None:
        """A dangling symlink is a missing database: SQLite would create its target."""
        link = tmp_path / "enrolments.db"
        link.symlink_to(tmp_path / "elsewhere.db")
        with pytest.raises(ConfigError, match="does not exist"):
            await SqlEnrolmentStore.open(f"sqlite+aiosqlite:///{link}", keyring(KEY_1))
        assert not (tmp_path / "elsewhere.db").exists()

    async def test_create_makes_the_database_and_its_wal_files_owner_only(
        self, tmp_path: Path
    ) -> None:
        """create=True makes the file 0600 under the usual 022 umask; -wal and -shm follow."""
        path = tmp_path / "enrolments.db"
        previous = os.umask(0o022)
        try:
            store = await SqlEnrolmentStore.open(
                f"sqlite+aiosqlite:///{path}", keyring(KEY_1), create=True
            )
        finally:
            os.umask(previous)
        try:
            await store.add_user("alice")
            siblings = _modes(tmp_path)
        finally:
            await store.close()
        assert siblings == {
            "enrolments.db": 0o600,
            "enrolments.db-wal": 0o600,
            "enrolments.db-shm": 0o600,
        }

    async def test_create_gives_mode_0600_whatever_the_umask(self, tmp_path: Path) -> None:
        """A umask that would leave the owner without write (0277) still gives 0600."""
        path = tmp_path / "enrolments.db"
        previous = os.umask(0o277)
        try:
            store = await SqlEnrolmentStore.open(
                f"sqlite+aiosqlite:///{path}", keyring(KEY_1), create=True
            )
        finally:
            os.umask(previous)
        await store.close()
        assert _modes(tmp_path) == {"enrolments.db": 0o600}

    async def test_create_applies_every_migration(self, tmp_path: Path) -> None:
        """The created database is at the newest revision."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'enrolments.db'}"
        store = await SqlEnrolmentStore.open(url, keyring(KEY_1), create=True)
        await store.close()
        assert await _versions(url) == [_head_revision()]

    async def test_create_refuses_an_existing_database_and_leaves_it_as_it_was(
        self, url: str, store: SqlEnrolmentStore
    ) -> None:
        """create=True on an existing file raises AlreadyExists; its users are still there."""
        await store.add_user("alice")
        with pytest.raises(AlreadyExists, match="already exists"):
            await SqlEnrolmentStore.open(url, keyring(KEY_1), create=True)
        assert await store.find_user("alice") is not None

    async def test_a_database_removed_while_open_is_not_created_again(self, tmp_path: Path) -> None:
        """A new pooled connection after the file was removed fails instead of making one."""
        path = tmp_path / "enrolments.db"
        store = await SqlEnrolmentStore.open(
            f"sqlite+aiosqlite:///{path}", keyring(KEY_1), create=True, pool_size=1, max_overflow=2
        )
        try:
            await store.add_user("alice")
            _remove_database(path)
            results = await asyncio.gather(
                *(store.find_user("alice") for _ in range(3)), return_exceptions=True
            )
        finally:
            await store.close()
        assert any(isinstance(r, EnrolmentUnavailable) for r in results)
        assert not path.exists()


class TestUsers:
    async def test_add_user_is_found_by_find_user(self, store: SqlEnrolmentStore) -> None:
        """A new user is returned by find_user with their attributes and no tokens."""
        added = await store.add_user("alice", display_name="Alice", email="a@example.org")
        found = await store.find_user("alice")
        assert found == added
        assert found is not None
        assert (found.display_name, found.email, found.tokens) == ("Alice", "a@example.org", ())

    async def test_find_user_returns_none_when_not_enrolled(self, store: SqlEnrolmentStore) -> None:
        """An unknown username gives None, not an exception."""
        assert await store.find_user("nobody") is None

    async def test_find_user_compares_username_exactly(self, store: SqlEnrolmentStore) -> None:
        """Usernames are stored as given: normalising them is the caller's job."""
        await store.add_user("alice")
        assert await store.find_user("Alice") is None

    async def test_add_user_raises_already_exists_when_username_taken(
        self, store: SqlEnrolmentStore
    ) -> None:
        """A second user with the same username is refused."""
        await store.add_user("alice")
        with pytest.raises(AlreadyExists, match="alice"):
            await store.add_user("alice")

    async def test_list_users_orders_by_username(self, store: SqlEnrolmentStore) -> None:
        """Every user is listed, sorted by username, with their tokens."""
        for name in ("carol", "alice", "bob"):
            await store.add_user(name)
        await store.add_totp("bob", SECRET)
        listed = await store.list_users()
        assert [user.username for user in listed] == ["alice", "bob", "carol"]
        assert [len(user.tokens) for user in listed] == [0, 1, 0]

    async def test_set_disabled_marks_user_disabled(self, store: SqlEnrolmentStore) -> None:
        """A disabled user is still found, flagged disabled."""
        await store.add_user("alice")
        await store.set_disabled("alice", True)
        found = await store.find_user("alice")
        assert found is not None
        assert found.disabled

    async def test_set_disabled_enables_user_again(self, store: SqlEnrolmentStore) -> None:
        """Enabling a disabled user clears the flag."""
        await store.add_user("alice")
        await store.set_disabled("alice", True)
        await store.set_disabled("alice", False)
        found = await store.find_user("alice")
        assert found is not None
        assert not found.disabled

    async def test_set_disabled_raises_not_found_when_user_unknown(
        self, store: SqlEnrolmentStore
    ) -> None:
        """Disabling a user who does not exist is a NotFound."""
        with pytest.raises(NotFound, match="nobody"):
            await store.set_disabled("nobody", True)

    async def test_remove_user_deletes_user_tokens_and_password(
        self, store: SqlEnrolmentStore, raw: AsyncEngine
    ) -> None:
        """Removing a user removes their tokens and password too (ON DELETE CASCADE)."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        await store.set_password_hash("alice", "$argon2id$placeholder")
        await store.remove_user("alice")
        assert await store.find_user("alice") is None
        async with raw.connect() as conn:
            tokens = (await conn.execute(select(func.count()).select_from(totp_tokens))).scalar()
            hashes = (await conn.execute(select(func.count()).select_from(passwords))).scalar()
        assert (tokens, hashes) == (0, 0)

    async def test_remove_user_raises_not_found_when_user_unknown(
        self, store: SqlEnrolmentStore
    ) -> None:
        """Removing a user who does not exist is a NotFound."""
        with pytest.raises(NotFound):
            await store.remove_user("nobody")

    async def test_find_users_returns_enrolled_users_by_name(
        self, store: SqlEnrolmentStore
    ) -> None:
        """A batched lookup returns the enrolled names only, each with its tokens."""
        await store.add_user("alice")
        await store.add_user("bob")
        await store.add_totp("bob", SECRET)
        found = await store.find_users(["bob", "nobody", "alice", "bob"])
        assert sorted(found) == ["alice", "bob"]
        assert [token.secret for token in found["bob"].tokens] == [SECRET]

    async def test_find_users_returns_empty_dict_when_no_names(
        self, store: SqlEnrolmentStore
    ) -> None:
        """An empty batch needs no query and finds nobody."""
        assert await store.find_users([]) == {}

    async def test_find_users_handles_more_names_than_one_in_list(
        self, store: SqlEnrolmentStore
    ) -> None:
        """A batch longer than one IN list still finds every enrolled user."""
        await store.add_user("alice")
        await store.add_user("zed")
        names = ["alice", *(f"ghost{i:04d}" for i in range(1200)), "zed"]
        assert sorted(await store.find_users(names)) == ["alice", "zed"]


class TestPasswords:
    async def test_get_password_hash_returns_latest_hash(self, store: SqlEnrolmentStore) -> None:
        """Setting a password twice replaces the stored hash."""
        await store.add_user("alice")
        await store.set_password_hash("alice", "$argon2id$first")
        await store.set_password_hash("alice", "$argon2id$second")
        assert await store.get_password_hash("alice") == "$argon2id$second"

    async def test_get_password_hash_returns_none_when_no_password_set(
        self, store: SqlEnrolmentStore
    ) -> None:
        """A user without a local password has no hash."""
        await store.add_user("alice")
        assert await store.get_password_hash("alice") is None

    async def test_get_password_hash_returns_none_when_user_unknown(
        self, store: SqlEnrolmentStore
    ) -> None:
        """An unknown user has no hash (not an exception: it is a login outcome)."""
        assert await store.get_password_hash("nobody") is None

    async def test_set_password_hash_raises_not_found_when_user_unknown(
        self, store: SqlEnrolmentStore
    ) -> None:
        """Setting the password of a user who does not exist is a NotFound."""
        with pytest.raises(NotFound):
            await store.set_password_hash("nobody", "$argon2id$x")


class TestTotp:
    async def test_find_user_returns_decrypted_tokens(self, store: SqlEnrolmentStore) -> None:
        """find_user returns every token with its secret decrypted and its parameters."""
        await store.add_user("alice")
        first = await store.add_totp("alice", SECRET)
        second = await store.add_totp(
            "alice", SECRET_2, digits=8, time_step=60, algorithm="sha256", serial="OATH0001"
        )
        found = await store.find_user("alice")
        assert found is not None
        assert found.tokens == (first, second)
        assert [t.secret for t in found.tokens] == [SECRET, SECRET_2]
        assert (found.tokens[1].digits, found.tokens[1].serial) == (8, "OATH0001")

    async def test_add_totp_stores_secret_encrypted(
        self, store: SqlEnrolmentStore, raw: AsyncEngine
    ) -> None:
        """The stored column holds neither the secret nor its base32, base64 or hex form."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        async with raw.connect() as conn:
            stored = (await conn.execute(select(totp_tokens.c.secret_enc))).scalar_one()
        forms = [
            SECRET.decode(),
            base64.b32encode(SECRET).decode().rstrip("="),
            base64.b64encode(SECRET).decode(),
            SECRET.hex(),
        ]
        assert stored.startswith("k1:")
        assert all(form not in stored for form in forms)

    async def test_add_totp_raises_not_found_when_user_unknown(
        self, store: SqlEnrolmentStore
    ) -> None:
        """A token for a user who does not exist is a NotFound."""
        with pytest.raises(NotFound):
            await store.add_totp("nobody", SECRET)

    @pytest.mark.parametrize(
        ("secret", "digits", "time_step", "algorithm"),
        [
            (b"", 6, 30, "sha1"),
            (SECRET, 5, 30, "sha1"),
            (SECRET, 6, 0, "sha1"),
            (SECRET, 6, 30, "md5"),
        ],
        ids=["empty-secret", "five-digits", "zero-step", "md5"],
    )
    async def test_add_totp_raises_value_error_when_parameter_invalid(
        self, store: SqlEnrolmentStore, secret: bytes, digits: int, time_step: int, algorithm: str
    ) -> None:
        """Parameters outside RFC 6238 are refused before anything is written."""
        await store.add_user("alice")
        with pytest.raises(ValueError, match=r"secret|digits|time_step|algorithm"):
            await store.add_totp(
                "alice", secret, digits=digits, time_step=time_step, algorithm=algorithm
            )

    async def test_remove_tokens_returns_count_removed(self, store: SqlEnrolmentStore) -> None:
        """Removing tokens deletes all of the user's tokens and says how many."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        await store.add_totp("alice", SECRET_2)
        assert await store.remove_tokens("alice") == 2
        found = await store.find_user("alice")
        assert found is not None
        assert found.tokens == ()

    async def test_remove_tokens_raises_not_found_when_user_unknown(
        self, store: SqlEnrolmentStore
    ) -> None:
        """Removing the tokens of a user who does not exist is a NotFound."""
        with pytest.raises(NotFound):
            await store.remove_tokens("nobody")

    async def test_find_user_raises_when_secret_blobs_swapped_between_users(
        self, store: SqlEnrolmentStore, raw: AsyncEngine
    ) -> None:
        """A blob copied into another user's token row does not decrypt (AAD binds the row)."""
        await store.add_user("alice")
        await store.add_user("mallory")
        alice_token = await store.add_totp("alice", SECRET)
        mallory_token = await store.add_totp("mallory", SECRET_2)
        async with raw.begin() as conn:
            blob = (
                await conn.execute(
                    select(totp_tokens.c.secret_enc).where(totp_tokens.c.id == alice_token.token_id)
                )
            ).scalar_one()
            await conn.execute(
                update(totp_tokens)
                .where(totp_tokens.c.id == mallory_token.token_id)
                .values(secret_enc=blob)
            )
        with pytest.raises(EnrolmentUnavailable, match="'k1'"):
            await store.find_user("mallory")


class TestKeys:
    async def test_check_passes_when_key_file_matches(self, store: SqlEnrolmentStore) -> None:
        """With the key that wrote the secrets, check() finds nothing wrong."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        await store.check()

    async def test_check_raises_key_unavailable_when_key_is_wrong(
        self, url: str, store: SqlEnrolmentStore
    ) -> None:
        """Another key under the same id is a KeyUnavailable naming the key id."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        other = await reopen(url, keyring(KEY_1_WRONG), verify=False)
        try:
            with pytest.raises(KeyUnavailable, match="'k1'"):
                await other.check()
        finally:
            await other.close()

    async def test_check_raises_key_unavailable_when_key_is_wrong_and_no_tokens(
        self, url: str, store: SqlEnrolmentStore
    ) -> None:
        """The key-check value catches a wrong key even before any token is enrolled."""
        other = await reopen(url, keyring(KEY_1_WRONG), verify=False)
        try:
            with pytest.raises(KeyUnavailable, match="'k1'"):
                await other.check()
        finally:
            await other.close()

    async def test_open_raises_key_unavailable_when_key_is_wrong(
        self, url: str, store: SqlEnrolmentStore
    ) -> None:
        """By default open() runs check(), so a wrong key stops start-up."""
        with pytest.raises(KeyUnavailable, match="'k1'"):
            await reopen(url, keyring(KEY_1_WRONG))

    async def test_check_raises_key_unavailable_when_key_id_missing(
        self, url: str, store: SqlEnrolmentStore
    ) -> None:
        """Secrets under a key id absent from the key file are a KeyUnavailable naming it."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        with pytest.raises(KeyUnavailable, match="key id 'k1' is not in the key file"):
            await reopen(url, keyring(KEY_2))

    async def test_rotation_keeps_old_secrets_and_uses_new_key(
        self, url: str, store: SqlEnrolmentStore, raw: AsyncEngine
    ) -> None:
        """After appending a key, old tokens still decrypt and new ones use the new key id."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        rotated = await reopen(url, keyring(KEY_1, KEY_2))
        try:
            await rotated.add_totp("alice", SECRET_2)
            found = await rotated.find_user("alice")
        finally:
            await rotated.close()
        assert found is not None
        assert [t.secret for t in found.tokens] == [SECRET, SECRET_2]
        async with raw.connect() as conn:
            key_ids = (await conn.execute(select(totp_tokens.c.key_id))).scalars().all()
        assert sorted(key_ids) == ["k1", "k2"]

    async def test_reencrypt_secrets_lets_old_key_be_retired(
        self, url: str, store: SqlEnrolmentStore
    ) -> None:
        """Re-encrypting under the new key makes the old key unnecessary."""
        await store.add_user("alice")
        await store.add_totp("alice", SECRET)
        rotated = await reopen(url, keyring(KEY_1, KEY_2))
        try:
            assert await rotated.reencrypt_secrets() == 1
        finally:
            await rotated.close()
        retired = await reopen(url, keyring(KEY_2))
        try:
            found = await retired.find_user("alice")
        finally:
            await retired.close()
        assert found is not None
        assert [t.secret for t in found.tokens] == [SECRET]


class TestUnavailable:
    async def test_find_user_raises_enrolment_unavailable_when_table_missing(
        self, store: SqlEnrolmentStore, raw: AsyncEngine
    ) -> None:
        """A database that lost its tables is an EnrolmentUnavailable with no SQL in it."""
        await store.add_user("alice")
        async with raw.begin() as conn:
            await conn.execute(text("DROP TABLE totp_tokens"))
        with pytest.raises(EnrolmentUnavailable) as caught:
            await store.find_user("alice")
        assert str(caught.value) == "enrolment-db: OperationalError"

    async def test_check_raises_enrolment_unavailable_when_table_missing(
        self, store: SqlEnrolmentStore, raw: AsyncEngine
    ) -> None:
        """check() reports an unreadable database as EnrolmentUnavailable."""
        async with raw.begin() as conn:
            await conn.execute(text("DROP TABLE key_check"))
        with pytest.raises(EnrolmentUnavailable):
            await store.check()


class TestUpgradeFromFirstRevision:
    async def test_users_of_revision_0001_keep_their_data_and_get_a_language(
        self, tmp_path: Path
    ) -> None:
        """A database made by revision 0001 upgrades in place; its users keep their fields."""
        path = tmp_path / "old.db"
        engine = create_engine(f"sqlite:///{path}")
        config = alembic.config.Config()
        config.set_main_option("script_location", SCRIPT_LOCATION)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            alembic.command.upgrade(config, "0001")
            conn.execute(
                text(
                    "INSERT INTO users (id, username, display_name, email, phone, disabled,"
                    " created_at) VALUES ('u1', 'old', 'Old User', 'o@x', '+14155550123', 0,"
                    " '2026-01-01 00:00:00')"
                )
            )
        engine.dispose()
        keyring = Keyring.from_text(KEY_1, source="test")
        store = await SqlEnrolmentStore.open(f"sqlite+aiosqlite:///{path}", keyring)
        try:
            user = await store.find_user("old")
        finally:
            await store.close()
        assert user is not None
        assert (user.display_name, user.phone, user.language) == ("Old User", "+14155550123", "")
