"""Writes usage rows by group commit: a response ends only once its row is committed.

``record()`` queues a row and returns a future that resolves when the transaction holding the
row has committed. One writer task commits whatever rows are waiting in one transaction and
then releases their requests, so a busy gateway pays one commit per batch, not per request.
``INSERT … ON CONFLICT (request_id) DO NOTHING`` makes a retried batch harmless.

Rows are never dropped for lack of room. When the database cannot keep up (``max_pending``
rows wait) or is failing, ``admit()`` refuses new billable requests with 503 and Retry-After
until writes succeed again; the rows already queued are retried with back-off meanwhile.
A row is dropped only if the database refuses that row on its own (a data error).

``durable=False`` is the operator's opt-out: ``record()``'s future is resolved at once and
rows are batched on a short timer, so a crash loses what had not been written yet.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from slipstream.errors import LedgerUnavailable, SlipstreamError
from slipstream.ledger.records import UsageRecord
from slipstream.store.db import Database
from slipstream.store.tables import usage

log = logging.getLogger(__name__)

_CHUNK = 1000  # rows per INSERT transaction when catching up
_RETRY_AFTER_S = 2
_BUFFERED_INTERVAL_S = 0.02


def _idempotent_insert(dialect: str) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(usage).on_conflict_do_nothing(index_elements=["request_id"])
    if dialect == "postgresql":
        return postgresql.insert(usage).on_conflict_do_nothing(index_elements=["request_id"])
    raise ValueError(f"the usage ledger supports sqlite and postgresql, not {dialect}")


def _is_row_error(exc: BaseException) -> bool:
    """True when the data itself is bad (retrying cannot help); False for the database being unwell.

    asyncpg's data errors reach us as a plain ``DBAPIError``: their SQLSTATE class says which
    they are (22 data exception, 23 integrity constraint violation).
    """
    if isinstance(exc, IntegrityError | DataError | sqlite3.IntegrityError | sqlite3.DataError):
        return True
    if isinstance(exc, sqlite3.Error):  # the bulk writer's own connection: locked, I/O, full disk …
        return isinstance(exc, sqlite3.InterfaceError | sqlite3.ProgrammingError)
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None)
        return isinstance(state, str) and state[:2] in ("22", "23")
    return isinstance(exc, StatementError | ValueError | TypeError | OverflowError)


def _column_bounds() -> tuple[dict[str, int], dict[str, int]]:
    """Each string column's length and each integer column's largest value, from the table itself."""
    lengths, maxima = {}, {}
    for column in usage.columns:
        kind = column.type
        if isinstance(kind, String) and kind.length:
            lengths[column.name] = kind.length
        elif isinstance(kind, BigInteger):
            maxima[column.name] = 2**63 - 1
        elif isinstance(kind, Integer):
            maxima[column.name] = 2**31 - 1
    return lengths, maxima


_LENGTHS, _MAXIMA = _column_bounds()


def bounded_row(rec: UsageRecord) -> dict[str, Any]:
    """The row, cut to fit its columns: an upstream's 200-character error code must not cost a row."""
    row = rec.as_row()
    for name, length in _LENGTHS.items():
        value = row[name]
        if isinstance(value, str) and len(value) > length:
            row[name] = value[:length]
    for name, top in _MAXIMA.items():
        value = row[name]
        if isinstance(value, int) and not 0 <= value <= top:
            row[name] = min(max(value, 0), top)
    return row


class RowRejected(SlipstreamError):
    """The database refused this request's usage row; the response must not claim success."""


_Entry = tuple[UsageRecord, "asyncio.Future[None] | None"]


class UsageRecorder:
    """The ledger's only writer: ``start()`` once, ``admit()`` and ``record()`` per request, then ``aclose()``."""

    def __init__(
        self,
        db: Database,
        *,
        durable: bool = True,
        max_pending: int = 20_000,
        commit_timeout: float = 30.0,
        max_backoff: float = 1.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._db = db
        self._insert = _idempotent_insert(db.dialect)
        self._bulk = db.bulk_writer(usage, "request_id")  # SQLite file: one thread hop per commit
        self._durable = durable
        self._max_pending = max_pending
        self._commit_timeout = commit_timeout
        self._max_backoff = max_backoff
        self._close_timeout = close_timeout
        self._pending: deque[_Entry] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last write failed for a reason other than its data
        self._closing = False
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.commits = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

    def admit(self) -> None:
        """Refuse a billable request while its row could not be written promptly (back-pressure)."""
        if self._closing:
            raise LedgerUnavailable("The server is shutting down; retry shortly.", retry_after=_RETRY_AFTER_S)
        if self._failing:
            raise LedgerUnavailable(
                "The usage ledger's database is unavailable, so no request can be billed; retry shortly.",
                retry_after=_RETRY_AFTER_S,
            )
        if len(self._pending) >= self._max_pending:
            raise LedgerUnavailable(
                "The usage ledger is behind; the server is refusing new requests until it catches up.",
                retry_after=_RETRY_AFTER_S,
            )

    def record(self, rec: UsageRecord) -> asyncio.Future[None]:
        """Queue one row; the future resolves once it is committed (at once when not durable).

        Never blocks, never raises and never drops a row while the recorder is open.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            log.error("usage recorder is closed; row for request %s not recorded", rec.request_id)
            self.dropped += 1
            _fail([(rec, done)], LedgerUnavailable("The server is shutting down.", retry_after=_RETRY_AFTER_S))
        elif self._durable:
            self._pending.append((rec, done))
        else:
            self._pending.append((rec, None))
            done.set_result(None)
        self._wake.set()
        return done

    async def committed(self, done: asyncio.Future[None]) -> None:
        """Wait for a row's commit, at most ``commit_timeout``; 503 if the database does not answer."""
        try:
            async with asyncio.timeout(self._commit_timeout):
                await asyncio.shield(done)
        except TimeoutError:
            raise LedgerUnavailable(
                "The usage ledger could not record this request in time; retry shortly.",
                retry_after=_RETRY_AFTER_S,
            ) from None

    async def flush(self) -> None:
        """Write everything queued so far; raises (keeping the rows) if the database is unavailable."""
        async with self._lock:
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), _CHUNK))]
                try:
                    await self._write(rec for rec, _ in batch)
                except BaseException as exc:
                    if _is_row_error(exc):
                        await self._write_row_by_row(batch)
                        continue
                    self._pending.extendleft(reversed(batch))
                    raise
                _resolve(batch)

    async def aclose(self) -> None:
        """Refuse new requests, write what is left, and give up (saying how much) after ``close_timeout``."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        try:
            async with asyncio.timeout(self._close_timeout):
                if self._task is not None:
                    await self._task
                else:
                    await self.flush()
        except TimeoutError:
            log.error("usage recorder: database unavailable at shutdown")
        except Exception:
            log.exception("usage recorder: final flush failed")
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._closed = True
            if self._pending:
                self.dropped += len(self._pending)
                log.error("usage recorder: %d usage rows could not be written", len(self._pending))
                _fail(self._pending, LedgerUnavailable("The usage ledger was closed before this row was written."))
                self._pending.clear()

    async def _run(self) -> None:
        backoff = 0.05
        while not (self._closing and not self._pending):
            await self._wake.wait()
            if not self._durable and not self._closing:
                await asyncio.sleep(_BUFFERED_INTERVAL_S)  # gather a batch: nobody waits for it
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                if not self._failing:
                    log.exception("usage recorder: write failed, %d rows kept; retrying", len(self._pending))
                self._failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._wake.set()
            else:
                if self._failing:
                    log.warning("usage recorder: the database is writable again")
                self._failing = False
                backoff = 0.05

    async def _write(self, batch: Iterable[UsageRecord]) -> None:
        rows = list({rec.request_id: bounded_row(rec) for rec in reversed(list(batch))}.values())
        if self._bulk is not None:
            await self._bulk.insert(rows)
        else:
            async with self._db.write() as conn:
                await conn.execute(self._insert, rows)
        self.written += len(rows)
        self.commits += 1

    async def _write_row_by_row(self, batch: list[_Entry]) -> None:
        """Isolate the bad rows of a failed batch; the good ones are still written."""
        for index, entry in enumerate(batch):
            rec = entry[0]
            try:
                await self._write([rec])
            except BaseException as exc:
                if not _is_row_error(exc):
                    self._pending.extendleft(reversed(batch[index:]))
                    raise
                self.dropped += 1
                log.error("usage row %s rejected by the database: %s", rec.request_id, exc)
                _fail([entry], RowRejected("The usage of this request could not be recorded."))
            else:
                _resolve([entry])


def _resolve(entries: Iterable[_Entry]) -> None:
    for _, done in entries:
        if done is not None and not done.done():
            done.set_result(None)


def _fail(entries: Iterable[_Entry], exc: BaseException) -> None:
    for _, done in entries:
        if done is not None and not done.done():
            done.set_exception(exc)
            done.exception()  # marks it retrieved: nobody may be waiting any more
