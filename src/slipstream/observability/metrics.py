"""Prometheus metrics, in a registry owned by one gateway (never the process-global default).

Per-request figures (TTFT, inter-token latency, tokens/s, spend) are observed by the usage
meter as they happen; runner figures (loaded runners, slots, queue) are read from the
supervisor at scrape time, so a scrape always shows the present.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 400, 800)


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """One model's label children, bound once: the hot path skips prometheus' label lookups."""

    ttft: Any
    itl: Any
    output_rate: Any
    request_latency: Any
    prompt_tokens: Any
    cached_tokens: Any
    completion_tokens: Any
    spend: Any
    requests_ok: Any
    requests_error: Any
    requests_cancelled: Any

    def requests(self, status: str) -> Any:
        return {"ok": self.requests_ok, "error": self.requests_error}.get(status, self.requests_cancelled)


class Metrics:
    def __init__(self) -> None:
        self._by_model: dict[str, ModelMetrics] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("slipstream_requests", "Model requests by outcome", ["model", "status"], registry=r)
        self.tokens = Counter("slipstream_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.spend = Counter("slipstream_spend_usd", "Spend at catalog prices, in US dollars", ["model"], registry=r)
        self.ttft = Histogram(
            "slipstream_time_to_first_token_seconds", "Time to first token", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "slipstream_inter_token_latency_seconds", "Time between streamed tokens", ["model"],
            buckets=ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.output_rate = Histogram(
            "slipstream_output_tokens_per_second", "Per-request output tokens/s after the first token",
            ["model"], buckets=RATE_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_latency = Histogram(
            "slipstream_request_duration_seconds", "Whole request latency", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.cold_starts = Counter("slipstream_cold_starts", "Runner cold starts", ["model"], registry=r)
        self.cold_start_seconds = Histogram(
            "slipstream_cold_start_seconds", "Runner start-up time, spawn to ready", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.loaded_runners = Gauge("slipstream_loaded_runners", "Runner processes loaded", registry=r)
        self.slots_in_use = Gauge("slipstream_slots_in_use", "Busy decode slots", ["model"], registry=r)
        self.slots_total = Gauge("slipstream_slots", "Decode slots", ["model"], registry=r)
        self.queued = Gauge("slipstream_queued_requests", "Requests waiting for a slot", ["model"], registry=r)
        self._queue = _RunnerQueueCollector()
        r.register(self._queue)
        self.runner_rss = Gauge("slipstream_runner_resident_bytes", "Runner resident memory", ["model"], registry=r)

    def for_model(self, model: str) -> ModelMetrics:
        bound = self._by_model.get(model)
        if bound is None:
            bound = self._by_model[model] = ModelMetrics(
                ttft=self.ttft.labels(model),
                itl=self.itl.labels(model),
                output_rate=self.output_rate.labels(model),
                request_latency=self.request_latency.labels(model),
                prompt_tokens=self.tokens.labels(model, "prompt"),
                cached_tokens=self.tokens.labels(model, "cached_prompt"),
                completion_tokens=self.tokens.labels(model, "completion"),
                spend=self.spend.labels(model),
                requests_ok=self.requests.labels(model, "ok"),
                requests_error=self.requests.labels(model, "error"),
                requests_cancelled=self.requests.labels(model, "cancelled"),
            )
        return bound

    def observe_cold_start(self, model: str, seconds: float) -> None:
        self.cold_starts.labels(model).inc()
        self.cold_start_seconds.labels(model).observe(seconds)

    def set_runners(self, rows: Iterable[dict[str, Any]]) -> None:
        """Gauges from ``Supervisor.status()``; rows of models backing off after a failed start are no runners."""
        rows = [row for row in rows if row.get("state", "loaded") == "loaded"]
        self.loaded_runners.set(len(rows))
        self._queue.rows = rows
        for gauge in (self.slots_in_use, self.slots_total, self.queued, self.runner_rss):
            gauge.clear()
        for row in rows:
            model = row["model"]
            self.slots_in_use.labels(model).set(row.get("slots_in_use", 0))
            self.slots_total.labels(model).set(row.get("parallel", 0))
            self.queued.labels(model).set(row.get("queued", 0))
            self.runner_rss.labels(model).set(row.get("rss_bytes", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RunnerQueueCollector(Collector):
    """Queue time as the runners count it (submit → slot), exported as a summary per model.

    The runner keeps cumulative totals, so a scrape needs no state here; a runner restart
    resets them, which Prometheus' rate() treats as a counter reset.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def collect(self) -> Iterable[Metric]:
        family = SummaryMetricFamily(
            "slipstream_queue_time_seconds", "Time requests waited for a decode slot", labels=["model"]
        )
        for row in self.rows:
            family.add_metric(
                [row["model"]],
                count_value=row.get("admitted_requests", 0),
                sum_value=row.get("queue_wait_s_total", 0.0),
            )
        yield family

    def describe(self) -> Iterable[Metric]:
        return []
