"""The meter turns whatever an upstream reports into one honest row, and metrics never cost it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from slipstream.auth.principal import Principal
from slipstream.catalog import ModelEntry, Prices
from slipstream.errors import UpstreamError
from slipstream.ledger.recorder import UsageRecorder
from slipstream.observability.metrics import Metrics
from slipstream.serving.metering import UsageMeter
from slipstream.store.db import Database
from slipstream.store.tables import usage

ENTRY = ModelEntry(id="m", provider="fake", prices=Prices(input=Decimal("1"), output=Decimal("2")))
PRINCIPAL = Principal("k1", "app", None)


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[UsageRecorder]:
    db = await Database.open(f"sqlite:///{tmp_path / 'm.db'}")
    rec = UsageRecorder(db)
    await rec.start()
    yield rec
    await rec.aclose()
    await db.aclose()


def meter(recorder: UsageRecorder, metrics: Metrics | None = None) -> UsageMeter:
    model_metrics = (metrics or Metrics()).for_model("m")
    return UsageMeter(recorder, model_metrics, PRINCIPAL, ENTRY, "req-1", stream=False)


async def row(recorder: UsageRecorder) -> dict[str, object]:
    async with recorder._db.read() as conn:
        return dict((await conn.execute(select(usage))).mappings().one())


async def test_more_cached_than_prompt_tokens_is_cut_to_the_prompt_and_recorded(recorder: UsageRecorder) -> None:
    m = meter(recorder)
    m.observe({"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 9}})
    await m.settle("ok", 200)
    stored = await row(recorder)
    assert (stored["prompt_tokens"], stored["cached_tokens"], stored["completion_tokens"]) == (5, 5, 2)


@pytest.mark.parametrize(
    "reported",
    [
        {"prompt_tokens": "many"},
        {"prompt_tokens": -3},
        {"completion_tokens": 1.5},
        {"prompt_tokens": 4, "prompt_tokens_details": ["cached"]},
        ["not", "a", "dict"],
    ],
)
def test_malformed_usage_is_an_upstream_error(reported: object) -> None:
    m = UsageMeter.__new__(UsageMeter)
    with pytest.raises(UpstreamError):
        m.observe(reported)  # type: ignore[arg-type]


async def test_a_failing_metric_never_costs_the_row(recorder: UsageRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    m = meter(recorder)
    m.observe({"prompt_tokens": 3, "completion_tokens": 1})

    def broken(*_args: object) -> None:
        raise ValueError("Counters can only be incremented by non-negative amounts.")

    monkeypatch.setattr(UsageMeter, "_observe", broken)
    await m.settle("ok", 200)
    assert (await row(recorder))["status"] == "ok"
