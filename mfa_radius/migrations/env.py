"""Alembic environment of the enrolment database.

Two ways in:

* :func:`mfa_radius.adapters.sql_enrolments.migrate` (every start-up) opens an async engine,
  and hands a synchronous connection to Alembic through ``config.attributes["connection"]``
  (``AsyncConnection.run_sync``); no ``alembic.ini`` is needed at runtime.
* Developers writing a revision run the ``alembic`` command with a two-line ini file
  (``[alembic]`` / ``script_location = mfa_radius:migrations``) and
  ``-x url=sqlite+aiosqlite:///dev.db``, e.g. ``alembic -c dev.ini -x url=... revision
  --autogenerate -m "..."``; then this module opens its own async engine.

On PostgreSQL a transaction-scoped advisory lock serialises nodes that start together, so only
one of them applies a revision. SQLite databases are batch-migrated (``render_as_batch``)
because SQLite's ALTER TABLE cannot change or drop most constraints.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_radius.adapters.sql_enrolments import metadata

#: Arbitrary constant naming the "mfa-radius schema migration" advisory lock on PostgreSQL.
MIGRATION_LOCK_ID = 0x6D66612D72616469


def run_on(connection: Connection) -> None:
    """Apply pending revisions on ``connection`` (called inside ``run_sync``)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    """Open an engine for the ``alembic`` command line and apply pending revisions."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def main() -> None:
    """Entry point: Alembic executes this module for every command."""
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        run_on(given)
        return
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) mode is not supported: migrate a real database")
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=sqlite+aiosqlite:///path.db")
    asyncio.run(run_with_own_engine(url))


main()
