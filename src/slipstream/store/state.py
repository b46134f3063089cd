"""Small server-wide values (the admin token digest, the secret check, the auth version) in the
``server_state`` table.

The auth version is a random value replaced in the same transaction as every change to a model
access key or to the admin token; replicas poll it (see ``auth/watcher.py``) and drop what they
cached when it moves. Random rather than a counter, so a bump is one upsert that never reads
the old value first.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from slipstream.store.tables import server_state

AUTH_VERSION = "auth_version"


async def get_state(conn: AsyncConnection, key: str) -> str | None:
    result = await conn.execute(select(server_state.c.value).where(server_state.c.key == key))
    value = result.scalar_one_or_none()
    return None if value is None else str(value)


async def put_state(conn: AsyncConnection, key: str, value: str, *, replace: bool = True) -> str:
    """Store ``value`` (or, with ``replace=False``, keep whatever another writer stored first); returns
    the value now stored."""
    dialect = conn.dialect.name
    insert = postgresql.insert(server_state) if dialect == "postgresql" else sqlite.insert(server_state)
    stmt = insert.values(key=key, value=value)
    if replace:
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
    await conn.execute(stmt)
    stored = await get_state(conn, key)
    assert stored is not None
    return stored


async def bump_auth_version(conn: AsyncConnection) -> None:
    """Tell every replica that keys or the admin token changed; call inside the changing transaction."""
    await put_state(conn, AUTH_VERSION, secrets.token_hex(8))
