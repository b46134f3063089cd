"""The async engine, tuned per backend, and migrations to head on open.

SQLite (the embedded default) runs in WAL mode with ``synchronous=NORMAL`` (a commit survives
the process dying; an OS crash or power cut may lose the last commits) or, with
``sqlite_fsync=True``, ``synchronous=FULL`` (every commit is on disk before it returns). Python's sqlite3
driver does not open transactions before DDL or SELECTs, so we take over ``BEGIN`` ourselves:
migrations are then atomic, and writers use ``BEGIN IMMEDIATE`` so they queue on
``busy_timeout`` instead of failing when a read lock cannot be upgraded.
PostgreSQL (asyncpg) is chosen by URL, for several gateway replicas.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from slipstream.store.sqlite_writer import SqliteBulkWriter

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
_BEGIN_OPTION = "slipstream_sqlite_begin"
_MIGRATION_LOCK_ID = 0x511B57EA  # pg_advisory_xact_lock key: one replica migrates at a time
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)
_DRIVER_FOR = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def normalize_url(url: str) -> str:
    """Accept ``sqlite:///…`` and ``postgresql://…`` and pick the async driver for them."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    return f"{_DRIVER_FOR.get(scheme, scheme)}://{rest}"


class Database:
    """One async engine per process; open with ``await Database.open(url)``."""

    def __init__(self, engine: AsyncEngine, sqlite_file: tuple[str, tuple[str, ...]] | None = None) -> None:
        self._engine = engine
        sqlite = engine.dialect.name == "sqlite"
        self._writer = engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"}) if sqlite else engine
        self._sqlite_file = sqlite_file  # path and pragmas, for connections of our own
        self._bulk_writers: list[SqliteBulkWriter] = []

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, sqlite_fsync: bool = False) -> Database:
        """Create the engine (and the SQLite file's directory), then migrate to head."""
        url = normalize_url(url)
        parsed = make_url(url)
        sqlite_file = None
        if parsed.get_backend_name() == "sqlite":
            pragmas = (*_SQLITE_PRAGMAS, f"PRAGMA synchronous={'FULL' if sqlite_fsync else 'NORMAL'}")
            engine = _sqlite_engine(url, parsed.database, pragmas)
            if not _in_memory(parsed.database):
                sqlite_file = (str(parsed.database), pragmas)
        else:
            engine = create_async_engine(url, pool_pre_ping=True)
        db = cls(engine, sqlite_file)
        if migrate:
            try:
                await db.migrate()
            except BaseException:
                await engine.dispose()
                raise
        return db

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def read(self) -> AsyncConnection:
        """``async with db.read() as conn``: a connection for queries."""
        return self._engine.connect()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """``async with db.write() as conn``: one transaction that holds the write lock from its start."""
        async with self._writer.begin() as conn:
            yield conn

    def bulk_writer(self, table: Table, conflict_key: str) -> SqliteBulkWriter | None:
        """A dedicated-thread inserter for a hot write path on a SQLite file; None elsewhere."""
        if self._sqlite_file is None:
            return None
        writer = SqliteBulkWriter(*self._sqlite_file[:1], table, conflict_key, self._sqlite_file[1])
        self._bulk_writers.append(writer)
        return writer

    async def migrate(self) -> None:
        async with self.write() as conn:
            await conn.run_sync(_upgrade_to_head)

    async def aclose(self) -> None:
        for writer in self._bulk_writers:
            await asyncio.to_thread(writer.close)
        await self._engine.dispose()


def alembic_config() -> Config:
    # alembic logs one INFO line per built-in plugin when first imported; that is noise in server logs
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _upgrade_to_head(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    from alembic import command

    command.upgrade(cfg, "head")


def _in_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


def _sqlite_engine(url: str, database: str | None, pragmas: tuple[str, ...]) -> AsyncEngine:
    if _in_memory(database):
        engine = create_async_engine(url, poolclass=StaticPool)
    else:
        assert database is not None
        path = Path(database).expanduser()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(path)
        engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _sqlite_on_begin
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _owner_only(path: Path) -> None:
    """The database holds key hashes, encrypted partner keys and everyone's usage: mode 0600.

    SQLite gives its -wal and -shm files the database file's mode, so creating the file first,
    owner-only, covers all three; a file left group- or world-readable by an older version is
    tightened, as are its -wal and -shm if they exist.
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = part.stat().st_mode & 0o777
            if mode & 0o077:
                part.chmod(mode & 0o700)
        except FileNotFoundError:
            continue


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))
