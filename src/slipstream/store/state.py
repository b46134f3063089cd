"""Small server-wide values (the admin token digest, the secret check) in the ``server_state`` table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from slipstream.store.tables import server_state


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
