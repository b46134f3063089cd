"""Usage totals grouped by key, model or UTC day, with costs summed as integers and shown as exact USD."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select

from slipstream.ledger.pricing import format_usd
from slipstream.store.db import Database
from slipstream.store.tables import usage

GroupBy = Literal["key", "model", "day"]
GROUPINGS: tuple[GroupBy, ...] = ("key", "model", "day")


def _day(dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of ``created_at`` (SQLite stores naive UTC text, PostgreSQL timestamptz)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", usage.c.created_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", usage.c.created_at)


async def usage_report(db: Database, by: GroupBy, since: date | None = None) -> list[dict[str, Any]]:
    """One row per group with requests, tokens and cost; days ascending, keys and models by cost."""
    if by not in GROUPINGS:
        raise ValueError(f"cannot group usage by {by!r}; choose one of {', '.join(GROUPINGS)}")
    labels: list[ColumnElement[Any]]
    if by == "key":
        labels = [usage.c.key_uuid.label("key_uuid"), func.max(usage.c.key_name).label("key_name")]
        group: list[ColumnElement[Any]] = [usage.c.key_uuid]
    elif by == "model":
        labels = [usage.c.model.label("model")]
        group = [usage.c.model]
    else:
        day = _day(db.dialect)
        labels = [day.label("day")]
        group = [day]
    cost = func.coalesce(func.sum(usage.c.cost_picousd), 0)
    query = select(
        *labels,
        func.count().label("requests"),
        func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(usage.c.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
        cost.label("cost_picousd"),
    ).group_by(*group)
    if since is not None:
        query = query.where(usage.c.created_at >= datetime.combine(since, time.min, tzinfo=UTC))
    async with db.read() as conn:
        result = await conn.execute(query)
        rows = [dict(row._mapping) for row in result]
    out = [_finish(row) for row in rows]
    if by == "day":
        out.sort(key=lambda r: r["day"])
    else:
        out.sort(key=lambda r: (-r["cost_picousd"], -r["requests"], str(r.get("model") or r.get("key_name"))))
    return out


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_picousd"):
        row[name] = int(row[name])  # PostgreSQL sums bigints as numeric
    row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    row["cost"] = format_usd(row["cost_picousd"])
    return row
