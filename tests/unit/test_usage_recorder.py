"""The recorder: idempotent by request id, batched, durable across close, and off the request path."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from slipstream.ledger.recorder import UsageRecorder
from slipstream.ledger.records import UsageRecord
from slipstream.store.db import Database
from slipstream.store.tables import usage
from tests.unit.databases import backends, fresh_database


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        yield database


def make(request_id: str, **kw: object) -> UsageRecord:
    fields: dict[str, object] = {
        "key_uuid": "k1",
        "key_name": "app",
        "model": "m",
        "provider": "fake",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_picousd": 123,
    }
    fields.update(kw)
    return UsageRecord(request_id=request_id, **fields)  # type: ignore[arg-type]


async def count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())


async def test_same_request_id_twice_is_one_row(db: Database) -> None:
    rec = UsageRecorder(db)
    rec.record(make("req-1"))
    rec.record(make("req-1", cost_picousd=999))  # same batch
    await rec.flush()
    rec.record(make("req-1", cost_picousd=555))  # a later batch
    await rec.flush()
    assert await count(db) == 1
    async with db.read() as conn:
        assert (await conn.execute(select(usage.c.cost_picousd))).scalar_one() == 123


async def test_close_flushes_everything(db: Database) -> None:
    rec = UsageRecorder(db, interval=10.0)  # the timer would never fire during this test
    await rec.start()
    for i in range(57):
        rec.record(make(f"r{i}"))
    await rec.aclose()
    assert await count(db) == 57
    assert rec.pending == 0


async def test_background_flush_writes_without_being_asked(db: Database) -> None:
    rec = UsageRecorder(db, interval=0.01)
    await rec.start()
    rec.record(make("bg"))
    deadline = time.monotonic() + 5
    while await count(db) == 0 and time.monotonic() < deadline:
        await _sleep(0.01)
    assert await count(db) == 1
    await rec.aclose()


async def test_row_fields_round_trip(db: Database) -> None:
    rec = UsageRecorder(db)
    when = datetime(2026, 11, 25, 10, 0, 1, 500, tzinfo=UTC)
    rec.record(
        make(
            "rt",
            created_at=when,
            status="error",
            http_status=502,
            error_code="upstream_error",
            latency_ms=12.5,
            ttft_ms=None,
            stream=True,
            cost_picousd=2**62,
        )
    )
    await rec.aclose()
    async with db.read() as conn:
        row = (await conn.execute(select(usage))).mappings().one()
    assert row["created_at"] == when
    assert row["cost_picousd"] == 2**62
    assert (row["status"], row["http_status"], row["error_code"]) == ("error", 502, "upstream_error")
    assert row["stream"] is True and row["ttft_ms"] is None


async def test_transient_failure_keeps_rows_and_retries(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    rec = UsageRecorder(db, interval=0.001, max_backoff=0.01)
    real_write = rec._write
    failures = {"left": 3}

    async def flaky(batch: list[UsageRecord]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        await real_write(batch)

    monkeypatch.setattr(rec, "_write", flaky)
    await rec.start()
    for i in range(10):
        rec.record(make(f"t{i}"))
    deadline = time.monotonic() + 5
    while await count(db) < 10 and time.monotonic() < deadline:
        await _sleep(0.01)
    await rec.aclose()
    assert await count(db) == 10
    assert failures["left"] == 0 and rec.dropped == 0


async def test_flush_raises_but_keeps_rows_when_database_is_down(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    rec = UsageRecorder(db)

    async def down(batch: list[UsageRecord]) -> None:
        raise OperationalError("INSERT", {}, Exception("unable to open database file"))

    monkeypatch.setattr(rec, "_write", down)
    rec.record(make("a"))
    rec.record(make("b"))
    with pytest.raises(OperationalError):
        await rec.flush()
    assert rec.pending == 2
    monkeypatch.undo()
    await rec.flush()
    assert await count(db) == 2


async def test_a_bad_row_is_isolated_and_the_rest_written(db: Database) -> None:
    rec = UsageRecorder(db)
    rec.record(make("good-1"))
    rec.record(make("bad", created_at=datetime(2026, 1, 1)))  # naive: refused by the UTC column
    rec.record(make("good-2"))
    await rec.flush()
    assert await count(db) == 2
    assert rec.dropped == 1


async def test_record_after_close_never_raises(db: Database) -> None:
    rec = UsageRecorder(db)
    await rec.aclose()
    rec.record(make("late"))
    assert rec.dropped == 1


async def test_sustains_well_over_2000_rows_per_second(db: Database) -> None:
    rec = UsageRecorder(db)
    await rec.start()
    n = 5000
    started = time.perf_counter()
    for i in range(n):
        rec.record(make(f"perf-{i}"))
        if i % 100 == 0:
            await _sleep(0)  # let the flusher interleave, as request handlers would
    await rec.aclose()
    elapsed = time.perf_counter() - started
    assert await count(db) == n
    assert n / elapsed > 2000, f"{n / elapsed:.0f} rows/s"


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
