"""One call's token counts and timings, written as exactly one usage row whatever happens.

``finish`` queues the row and returns its commit; ``settle`` also waits for that commit, which
is how a response is held back until its row is durable (see ``ledger/recorder.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from slipstream.auth.principal import Principal
from slipstream.catalog import ModelEntry
from slipstream.errors import SlipstreamError, UpstreamError
from slipstream.ledger.pricing import cost_picousd
from slipstream.ledger.recorder import UsageRecorder
from slipstream.ledger.records import UsageRecord
from slipstream.observability.metrics import ModelMetrics

log = logging.getLogger(__name__)


class UsageMeter:
    """Follows cumulative usage as it arrives; ``finish`` records once, later calls are no-ops."""

    __slots__ = (
        "_committed", "_entry", "_last_token_at", "_metrics", "_principal", "_recorder", "_request_id",
        "_started", "_stream", "cached_tokens", "completion_tokens", "first_token_at", "prompt_tokens",
    )  # fmt: skip

    def __init__(
        self,
        recorder: UsageRecorder,
        metrics: ModelMetrics,
        principal: Principal,
        entry: ModelEntry,
        request_id: str,
        *,
        stream: bool,
    ) -> None:
        self._recorder = recorder
        self._metrics = metrics
        self._principal = principal
        self._entry = entry
        self._request_id = request_id
        self._stream = stream
        self._started = time.monotonic()
        self._committed: asyncio.Future[None] | None = None
        self.first_token_at: float | None = None
        self._last_token_at = 0.0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.completion_tokens = 0

    def observe(self, usage: dict[str, Any] | None) -> None:
        """Take cumulative usage from a provider (the last one seen wins).

        Counts that are not whole numbers are the upstream's fault (502, and the row says so);
        cached tokens beyond the prompt are impossible and are cut to the prompt.
        """
        if not usage:
            return
        if not isinstance(usage, dict):
            raise UpstreamError("The upstream reported malformed usage.")
        details = usage.get("prompt_tokens_details") or {}
        if not isinstance(details, dict):
            raise UpstreamError("The upstream reported malformed usage.")
        prompt = _count(usage.get("prompt_tokens"))
        self.prompt_tokens = prompt
        self.completion_tokens = _count(usage.get("completion_tokens"))
        self.cached_tokens = min(_count(details.get("cached_tokens")), prompt)

    def token_arrived(self) -> None:
        """Called per streamed chunk with content: feeds TTFT and inter-token latency."""
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
            self._metrics.ttft.observe(now - self._started)
        else:
            self._metrics.itl.observe(now - self._last_token_at)
        self._last_token_at = now

    def timings_from(self, first_at: float | None, intervals: list[float]) -> None:
        """Take a lent stream's timings from the runner that wrote it (``time.monotonic()`` clock)."""
        if first_at is not None and self.first_token_at is None:
            self.first_token_at = first_at
            self._metrics.ttft.observe(max(0.0, first_at - self._started))
        for gap in intervals:
            self._metrics.itl.observe(gap)

    def fail(self, exc: BaseException) -> asyncio.Future[None]:
        """Record the call as ended by ``exc``: its own status, a cancellation, or an internal error."""
        if isinstance(exc, SlipstreamError):
            return self.finish("error", exc.status, exc.code)
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return self.finish("cancelled", 499, "client_disconnected")
        return self.finish("error", 500, "internal_error")

    async def settle_failure(self, exc: BaseException) -> None:
        """Record a failure and, unless the client is gone, hold its answer until the row is committed.

        A meter that was finished already (its commit timed out, say) is not waited for twice.
        """
        if self.finished:
            return
        committed = self.fail(exc)
        if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
            with contextlib.suppress(SlipstreamError):  # the caller reports ``exc``, not the ledger's trouble
                await self._recorder.committed(committed)

    async def settle(self, status: str, http_status: int, error_code: str | None = None) -> None:
        """Record the call and wait until its row is committed: 503 if the ledger cannot say so in time."""
        await self._recorder.committed(self.finish(status, http_status, error_code))

    @property
    def finished(self) -> bool:
        return self._committed is not None

    def finish(self, status: str, http_status: int, error_code: str | None = None) -> asyncio.Future[None]:
        """Queue the row (once: later calls return the first row's commit) and return its commit."""
        if self._committed is not None:
            return self._committed
        now = time.monotonic()
        ttft = None if self.first_token_at is None else round((self.first_token_at - self._started) * 1000, 3)
        cost = cost_picousd(self._entry.prices, self.prompt_tokens, self.cached_tokens, self.completion_tokens)
        self._committed = self._recorder.record(
            UsageRecord(
                request_id=self._request_id,
                key_uuid=self._principal.key_uuid,
                key_name=self._principal.name,
                model=self._entry.id,
                provider=self._entry.provider,
                prompt_tokens=self.prompt_tokens,
                cached_tokens=self.cached_tokens,
                completion_tokens=self.completion_tokens,
                cost_picousd=cost,
                status=status,
                http_status=http_status,
                error_code=error_code,
                latency_ms=round((now - self._started) * 1000, 3),
                ttft_ms=ttft,
                stream=self._stream,
            )
        )
        try:  # the row is queued already: metrics must never cost an answer
            self._observe(status, now, cost)
        except Exception:
            log.exception("metrics update failed for request %s", self._request_id)
        return self._committed

    def _observe(self, status: str, now: float, cost: int) -> None:
        m = self._metrics
        m.requests(status).inc()
        m.request_latency.observe(now - self._started)
        m.prompt_tokens.inc(self.prompt_tokens - self.cached_tokens)
        m.cached_tokens.inc(self.cached_tokens)
        m.completion_tokens.inc(self.completion_tokens)
        m.spend.inc(cost / 1e12)
        if self.first_token_at is not None and self.completion_tokens > 1 and now > self.first_token_at:
            m.output_rate.observe((self.completion_tokens - 1) / (now - self.first_token_at))


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UpstreamError("The upstream reported malformed usage.")
    return value
