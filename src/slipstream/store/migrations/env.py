"""Alembic environment: runs on a connection handed over by ``Database.open``, or standalone.

Standalone (the ``alembic`` command), the URL is taken from ``-x url=...``,
``$SLIPSTREAM_DATABASE_URL`` or the default settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from slipstream.store.tables import metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transactional_ddl=True,  # on SQLite too: Database takes over BEGIN, so DDL is transactional
    )
    with context.begin_transaction():
        context.run_migrations()


def _standalone_url() -> str:
    from slipstream.config import load_settings
    from slipstream.store.db import normalize_url

    url = context.get_x_argument(as_dictionary=True).get("url")
    return normalize_url(url or load_settings().resolved_database_url)


async def _run_standalone() -> None:
    engine = create_async_engine(_standalone_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
    else:
        asyncio.run(_run_standalone())


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
main()
