"""The store: migrations match the Core tables, and SQLite is opened the way the design says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from slipstream.store.db import Database, normalize_url
from slipstream.store.tables import metadata
from tests.unit.databases import backends, fresh_database


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        yield database


def _schema_diff(conn: Connection) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_match_the_tables(db: Database) -> None:
    async with db.read() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_sqlite_settings_and_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "slipstream.db"
    db = await Database.open(f"sqlite:///{path}")
    try:
        async with db.read() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 10_000, "foreign_keys": 1}
        assert db.dialect == "sqlite"
    finally:
        await db.aclose()
    reopened = await Database.open(f"sqlite:///{path}")  # migrating an up-to-date database is a no-op
    await reopened.aclose()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected
