"""Idempotent bulk inserts into SQLite from one dedicated thread with its own connection.

The usage ledger commits a transaction before every answer, so its write path is hot. Through
SQLAlchemy's async engine a one-row transaction is three aiosqlite thread hops (BEGIN, INSERT,
COMMIT), each behind a greenlet switch: about 0.5 ms of gateway CPU per commit on the development
machine (``bench/gateway_overhead.py``). Here a transaction is one hop and one ``executemany``.
Values are stored exactly as SQLAlchemy's SQLite dialect stores them, so every other reader of
the table (reports, bills, the CLI) sees no difference.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table

# SQLAlchemy's SQLite DATETIME storage format (naive UTC text, microseconds always written)
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def sqlite_value(value: Any) -> Any:
    """A Python value as SQLAlchemy would bind it on SQLite; naive datetimes are refused (UTC only)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).strftime(_DATETIME_FORMAT)
    return value


class SqliteBulkWriter:
    """``await writer.insert(rows)``: one transaction, ``ON CONFLICT (key) DO NOTHING``.

    A batch is one multi-row INSERT where it fits, committed on its own (autocommit): then the
    writer thread gives up and takes back the GIL once per batch rather than once per row, which
    under a busy event loop can cost a switch interval (5 ms) each time.
    """

    def __init__(self, path: str, table: Table, conflict_key: str, pragmas: Sequence[str]) -> None:
        self._path = path
        self._pragmas = tuple(pragmas)
        self._columns = [column.name for column in table.columns]
        names = ", ".join(f'"{name}"' for name in self._columns)
        self._head = f'INSERT INTO "{table.name}" ({names}) VALUES '
        self._row = "(" + ", ".join("?" for _ in self._columns) + ")"
        self._tail = f' ON CONFLICT ("{conflict_key}") DO NOTHING'
        # SQLite binds at most 32,766 parameters per statement (since 3.32)
        self._rows_per_statement = max(1, min(500, 32_766 // len(self._columns)))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None  # made, used and closed on the writer thread only

    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        values = [sqlite_value(row[name]) for row in rows for name in self._columns]
        await asyncio.get_running_loop().run_in_executor(self._executor, self._insert, values, len(rows))

    def close(self) -> None:
        self._executor.submit(self._disconnect).result()
        self._executor.shutdown(wait=True)

    def _statement(self, rows: int) -> str:
        return self._head + ", ".join([self._row] * rows) + self._tail

    def _insert(self, values: list[Any], rows: int) -> None:
        conn = self._connection()
        step, width = self._rows_per_statement, len(self._columns)
        try:
            if rows <= step:  # one statement is its own transaction; it takes the write lock at once
                conn.execute(self._statement(rows), values)
                return
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: wait on busy_timeout, never fail to upgrade
            for first in range(0, rows, step):
                count = min(step, rows - first)
                conn.execute(self._statement(count), values[first * width : (first + count) * width])
            conn.execute("COMMIT")
        except sqlite3.OperationalError:  # the database, not the data: the next attempt starts afresh
            self._disconnect()
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None)
            try:
                for pragma in self._pragmas:
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
