"""Writes usage rows off the request path: buffered, batched, idempotent, and retried until stored.

``record()`` only appends to a buffer. A background task flushes it every ``interval`` seconds
or as soon as ``batch_size`` rows wait, in one transaction per chunk, with
``INSERT … ON CONFLICT (request_id) DO NOTHING`` so a retried batch never double-bills.
When the database is unreachable rows stay buffered (up to ``max_pending``) and the write is
retried with backoff; a row is dropped only if it fails on its own with a data error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from slipstream.ledger.records import UsageRecord
from slipstream.store.db import Database
from slipstream.store.tables import usage

log = logging.getLogger(__name__)

_CHUNK = 1000  # rows per INSERT transaction when catching up


def _idempotent_insert(dialect: str) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(usage).on_conflict_do_nothing(index_elements=["request_id"])
    if dialect == "postgresql":
        return postgresql.insert(usage).on_conflict_do_nothing(index_elements=["request_id"])
    raise ValueError(f"the usage ledger supports sqlite and postgresql, not {dialect}")


def _is_row_error(exc: BaseException) -> bool:
    """True when the data itself is bad (retrying cannot help); False for the database being unwell."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        return False
    return isinstance(exc, StatementError | ValueError | TypeError | OverflowError)


class UsageRecorder:
    """The ledger's only writer. ``start()`` once, ``record()`` per request, ``aclose()`` at shutdown."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 200,
        interval: float = 0.02,
        max_pending: int = 100_000,
        max_backoff: float = 5.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._db = db
        self._insert = _idempotent_insert(db.dialect)
        self._batch_size = batch_size
        self._interval = interval
        self._max_pending = max_pending
        self._max_backoff = max_backoff
        self._close_timeout = close_timeout
        self._pending: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self.written = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

    def record(self, rec: UsageRecord) -> None:
        """Queue one row. Never blocks and never raises: the response must not depend on the ledger."""
        try:
            if self._closed:
                self.dropped += 1
                log.error("usage recorder is closed; row for request %s not recorded", rec.request_id)
                return
            if len(self._pending) >= self._max_pending:
                lost = self._pending.popleft()
                self.dropped += 1
                log.error("usage buffer full (%d rows); dropped row %s", self._max_pending, lost.request_id)
            self._pending.append(rec)
            self._wake.set()
            if len(self._pending) >= self._batch_size:
                self._full.set()
        except Exception:
            log.exception("could not queue usage row")

    async def flush(self) -> None:
        """Write everything queued so far; raises (keeping the rows) if the database is unavailable."""
        async with self._lock:
            while self._pending:
                count = min(len(self._pending), _CHUNK)
                batch = [self._pending.popleft() for _ in range(count)]
                try:
                    await self._write(batch)
                except BaseException as exc:
                    if _is_row_error(exc):
                        await self._write_row_by_row(batch)
                        continue
                    self._pending.extendleft(reversed(batch))
                    raise

    async def aclose(self) -> None:
        """Stop accepting rows and write what is left, giving up (saying how much) after ``close_timeout``."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._full.set()
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
                self._pending.clear()

    async def _run(self) -> None:
        backoff = 0.05
        while not (self._closing and not self._pending):
            await self._wake.wait()
            if not self._closing and len(self._pending) < self._batch_size:
                try:
                    async with asyncio.timeout(self._interval):
                        await self._full.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            self._full.clear()
            try:
                await self.flush()
                backoff = 0.05
            except Exception:
                log.exception("usage recorder: write failed, %d rows kept; retrying", len(self._pending))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._wake.set()

    async def _write(self, batch: Iterable[UsageRecord]) -> None:
        rows = list({rec.request_id: rec.as_row() for rec in reversed(list(batch))}.values())
        async with self._db.write() as conn:
            await conn.execute(self._insert, rows)
        self.written += len(rows)

    async def _write_row_by_row(self, batch: list[UsageRecord]) -> None:
        """Isolate the bad rows of a failed batch; the good ones are still written."""
        for index, rec in enumerate(batch):
            try:
                await self._write([rec])
            except BaseException as exc:
                if not _is_row_error(exc):
                    self._pending.extendleft(reversed(batch[index:]))
                    raise
                self.dropped += 1
                log.error("usage row %s rejected by the database: %s", rec.request_id, exc)
