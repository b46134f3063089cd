"""The recorder: idempotent by request id, group-committed, durable across close, and back-pressure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from slipstream.errors import LedgerUnavailable
from slipstream.ledger import recorder as recorder_module
from slipstream.ledger.recorder import RowRejected, UsageRecorder
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
    rec = UsageRecorder(db, durable=False)
    await rec.start()
    for i in range(57):
        rec.record(make(f"r{i}"))
    await rec.aclose()
    assert await count(db) == 57
    assert rec.pending == 0


async def test_background_flush_writes_without_being_asked(db: Database) -> None:
    rec = UsageRecorder(db, durable=False)
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

    rec = UsageRecorder(db, max_backoff=0.01)
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


async def test_a_row_is_committed_before_its_future_resolves(db: Database) -> None:
    rec = UsageRecorder(db)
    await rec.start()
    done = rec.record(make("durable"))
    assert not done.done()
    await rec.committed(done)
    assert await count(db) == 1
    await rec.aclose()


async def test_waiting_rows_share_one_commit(db: Database) -> None:
    rec = UsageRecorder(db)
    await rec.start()
    futures = [rec.record(make(f"g{i}")) for i in range(300)]  # queued before the writer runs
    await asyncio.gather(*futures)
    assert await count(db) == 300
    assert rec.commits == 1
    await rec.aclose()


async def test_a_failing_database_refuses_new_requests_keeps_rows_and_recovers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    rec = UsageRecorder(db, max_backoff=0.01, commit_timeout=0.2)
    real_write = rec._write
    down = {"on": True}

    async def maybe_down(batch: list[UsageRecord]) -> None:
        if down["on"]:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        await real_write(batch)

    monkeypatch.setattr(rec, "_write", maybe_down)
    await rec.start()
    rec.admit()  # healthy so far
    done = rec.record(make("while-down"))
    with pytest.raises(LedgerUnavailable) as refused:
        await rec.committed(done)
    assert refused.value.status == 503 and refused.value.retry_after
    with pytest.raises(LedgerUnavailable):
        rec.admit()
    down["on"] = False
    await asyncio.wait_for(asyncio.shield(done), 5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            rec.admit()
            break
        except LedgerUnavailable:
            await asyncio.sleep(0.01)
    rec.admit()
    assert await count(db) == 1 and rec.dropped == 0
    await rec.aclose()


async def test_a_backlog_refuses_new_requests_but_never_drops_rows(db: Database) -> None:
    rec = UsageRecorder(db, max_pending=5)  # not started: nothing drains the queue
    for i in range(5):
        rec.admit()
        rec.record(make(f"b{i}"))
    with pytest.raises(LedgerUnavailable):
        rec.admit()
    rec.record(make("b5"))  # a request admitted earlier still gets its row
    assert rec.pending == 6
    await rec.flush()
    rec.admit()
    assert await count(db) == 6 and rec.dropped == 0


async def test_a_rejected_row_fails_its_own_future_only(db: Database) -> None:
    rec = UsageRecorder(db)
    good = rec.record(make("ok-1"))
    bad = rec.record(make("bad", created_at=datetime(2026, 1, 1)))
    await rec.flush()
    assert good.result() is None
    with pytest.raises(RowRejected):
        bad.result()


async def test_an_over_long_field_is_cut_to_its_column_and_nothing_stalls(db: Database) -> None:
    rec = UsageRecorder(db)
    for i in range(3):
        rec.record(make(f"fine-{i}"))
    rec.record(make("long", error_code="x" * 200, status="error", http_status=502, prompt_tokens=2**40))
    await rec.flush()
    assert await count(db) == 4 and rec.dropped == 0
    async with db.read() as conn:
        row = (await conn.execute(select(usage).where(usage.c.request_id == "long"))).mappings().one()
    assert row["error_code"] == "x" * 64 and row["prompt_tokens"] == 2**31 - 1


async def test_a_postgres_data_error_is_a_row_error_not_an_outage(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite does not enforce string lengths")
    monkeypatch.setattr(recorder_module, "bounded_row", UsageRecord.as_row)  # what the database sees unbounded
    rec = UsageRecorder(db)
    await rec.start()
    fine = [rec.record(make(f"fine-{i}")) for i in range(3)]
    bad = rec.record(make("long", error_code="x" * 200))
    await asyncio.wait_for(asyncio.gather(*fine), 5)
    with pytest.raises(RowRejected):
        await asyncio.wait_for(bad, 5)
    assert await count(db) == 3 and rec.dropped == 1
    rec.admit()  # a bad row is not an outage
    await rec.aclose()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
