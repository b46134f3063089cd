"""Usage reports: grouping, ordering, the since filter, and exact cost strings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from slipstream.ledger.recorder import UsageRecorder
from slipstream.ledger.records import UsageRecord
from slipstream.ledger.reports import usage_report
from slipstream.store.db import Database
from tests.unit.databases import backends, fresh_database


def row(rid: str, key: str, model: str, day: int, hour: int, cost: int, **kw: int) -> UsageRecord:
    return UsageRecord(
        request_id=rid,
        key_uuid=f"uuid-{key}",
        key_name=key,
        model=model,
        provider="fake",
        prompt_tokens=kw.get("prompt", 10),
        cached_tokens=kw.get("cached", 0),
        completion_tokens=kw.get("completion", 5),
        cost_picousd=cost,
        created_at=datetime(2026, 11, day, hour, 30, tzinfo=UTC),
    )


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        await _fill(database)
        yield database


async def _fill(database: Database) -> None:
    recorder = UsageRecorder(database)
    for rec in [
        row("1", "alice", "m-small", 1, 0, 100, cached=4),
        row("2", "alice", "m-big", 1, 23, 10**12),
        row("3", "bob", "m-small", 2, 0, 1),
        row("4", "bob", "m-small", 3, 12, 2, prompt=100, completion=50),
    ]:
        recorder.record(rec)
    await recorder.aclose()


async def test_by_key_sorted_by_cost(db: Database) -> None:
    rows = await usage_report(db, "key")
    assert [(r["key_name"], r["key_uuid"]) for r in rows] == [("alice", "uuid-alice"), ("bob", "uuid-bob")]
    alice = rows[0]
    assert alice["requests"] == 2
    assert (alice["prompt_tokens"], alice["cached_tokens"], alice["completion_tokens"]) == (20, 4, 10)
    assert alice["total_tokens"] == 30
    assert alice["cost_picousd"] == 10**12 + 100
    assert alice["cost"] == "1.0000000001"


async def test_by_model(db: Database) -> None:
    rows = await usage_report(db, "model")
    assert [r["model"] for r in rows] == ["m-big", "m-small"]
    assert rows[1]["requests"] == 3 and rows[1]["cost"] == "0.000000000103"


async def test_by_utc_day_ascending(db: Database) -> None:
    rows = await usage_report(db, "day")
    assert [(r["day"], r["requests"]) for r in rows] == [("2026-11-01", 2), ("2026-11-02", 1), ("2026-11-03", 1)]


async def test_since_is_inclusive_from_utc_midnight(db: Database) -> None:
    rows = await usage_report(db, "day", since=date(2026, 11, 2))
    assert [r["day"] for r in rows] == ["2026-11-02", "2026-11-03"]
    assert await usage_report(db, "key", since=date(2027, 1, 1)) == []


async def test_unknown_grouping(db: Database) -> None:
    with pytest.raises(ValueError):
        await usage_report(db, "week")  # type: ignore[arg-type]
