"""Fresh databases for store-level tests: SQLite always, PostgreSQL too when
``SLIPSTREAM_TEST_POSTGRES_URL`` names a server (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from slipstream.store.db import Database, normalize_url

POSTGRES_ENV = "SLIPSTREAM_TEST_POSTGRES_URL"


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


@asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        db = await Database.open(f"sqlite:///{tmp_path / 'test.db'}")
        try:
            yield db
        finally:
            await db.aclose()
        return
    server = make_url(normalize_url(os.environ[POSTGRES_ENV]))
    name = f"slip_test_{secrets.token_hex(6)}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        db = await Database.open(server.set(database=name).render_as_string(hide_password=False))
        try:
            yield db
        finally:
            await db.aclose()
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE "{name}"'))
    finally:
        await admin.dispose()
