"""The engine benchmark's load client: streaming chat completions, measured per chunk.

Metric names follow vLLM's ``benchmark_serving``: ``output_throughput`` (aggregate output tokens/s),
``ttft_ms`` (time to the first content token), ``itl_ms`` (the gaps between content chunks) and
``tpot_ms`` (time per output token after the first: (latency - ttft) / (output tokens - 1)).

Output tokens come from the final usage chunk (``stream_options.include_usage``) when the server
sends one, else from the last usage seen on any chunk, else from the number of content chunks.
A stream counts as complete only with HTTP 200, a ``finish_reason`` and ``data: [DONE]``;
failures are counted and described, never fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import aiohttp
import orjson

from benchlib import summarize

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle stays upright while it is moving.",
    "Describe the water cycle to a ten-year-old.",
    "List some tips for keeping a small vegetable garden healthy through the summer.",
    "Write a friendly letter inviting a neighbour to a picnic in the park.",
    "Explain why the sky looks blue during the day and red at sunset.",
    "Describe a busy morning at a train station in a large city.",
    "Give advice to someone who is learning to cook for the first time.",
]


@dataclass
class StreamResult:
    ok: bool
    error: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    itls_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    usage_source: str = "none"
    finish_reason: str | None = None
    retries: int = 0

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class Target:
    """Where and how to send one contender's requests."""

    url: str  # .../v1/chat/completions
    model: str
    headers: dict[str, str]
    extra_body: dict[str, Any]

    def body(self, prompt: str, max_tokens: int) -> bytes:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra_body,
        }
        return orjson.dumps(payload)


# Errors before any response that mean the request never reached the server: a pooled keep-alive
# connection that the server had already closed (cpp-httplib, in llama-server, closes idle ones
# after a few seconds and others after a few requests). Retried on the next pooled or a fresh
# connection, at most MAX_STALE_RETRIES times, and counted. The clock keeps running meanwhile.
_STALE_CONNECTION = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
MAX_STALE_RETRIES = 10


async def stream_once(session: aiohttp.ClientSession, target: Target, prompt: str, max_tokens: int) -> StreamResult:
    t0 = time.perf_counter()
    retries = 0
    while True:
        try:
            result = await _stream(session, target, prompt, max_tokens, t0)
        except _STALE_CONNECTION as exc:
            if getattr(exc, "_slipstream_got_status", False) or retries >= MAX_STALE_RETRIES:
                return StreamResult(False, f"{type(exc).__name__}: {exc}"[:200], time.perf_counter() - t0)
            retries += 1
            continue
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return StreamResult(False, f"{type(exc).__name__}: {exc}"[:200], time.perf_counter() - t0)
        result.retries = retries
        return result


async def _stream(
    session: aiohttp.ClientSession, target: Target, prompt: str, max_tokens: int, t0: float
) -> StreamResult:
    headers = {"Content-Type": "application/json", **target.headers}
    stamps: list[float] = []
    final_usage: dict[str, Any] | None = None
    any_usage: dict[str, Any] | None = None
    finish = None
    done = False
    async with session.post(target.url, data=target.body(prompt, max_tokens), headers=headers) as resp:
        if resp.status != 200:
            text = (await resp.read())[:200].decode(errors="replace")
            return StreamResult(False, f"HTTP {resp.status}: {text}", time.perf_counter() - t0)
        try:
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue  # blank separators, ": ping" comments, "event:" lines
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                obj = orjson.loads(data)
                if obj.get("error"):
                    return StreamResult(False, f"error event: {str(obj['error'])[:200]}", time.perf_counter() - t0)
                choices = obj.get("choices") or []
                for choice in choices:
                    if (choice.get("delta") or {}).get("content"):
                        stamps.append(time.perf_counter())
                    finish = choice.get("finish_reason") or finish
                if obj.get("usage"):
                    any_usage = obj["usage"]
                    if not choices:
                        final_usage = obj["usage"]
        except _STALE_CONNECTION as exc:
            exc._slipstream_got_status = True  # type: ignore[union-attr]
            raise
    latency = time.perf_counter() - t0
    if final_usage is not None:
        tokens, source = int(final_usage.get("completion_tokens") or 0), "final_usage"
    elif any_usage is not None:
        tokens, source = int(any_usage.get("completion_tokens") or 0), "chunk_usage"
    else:
        tokens, source = len(stamps), "chunks"
    result = StreamResult(
        ok=done and finish is not None and bool(stamps),
        latency_s=latency,
        ttft_s=stamps[0] - t0 if stamps else None,
        itls_s=[b - a for a, b in pairwise(stamps)],
        output_tokens=tokens,
        usage_source=source,
        finish_reason=finish,
    )
    if not result.ok:
        missing = [("no [DONE]", not done), ("no finish_reason", finish is None), ("no content", not stamps)]
        result.error = "incomplete stream: " + ", ".join(what for what, yes in missing if yes)
    return result


async def run_level(
    session: aiohttp.ClientSession,
    target: Target,
    concurrency: int,
    requests: int,
    max_tokens: int,
    time_budget_s: float,
) -> tuple[list[StreamResult], float]:
    """A closed loop of ``concurrency`` workers; stops issuing after ``requests`` or the time budget."""
    results: list[StreamResult] = []
    issued = 0
    start = time.perf_counter()
    deadline = start + time_budget_s

    async def worker() -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            prompt = PROMPTS[issued % len(PROMPTS)]
            issued += 1
            results.append(await stream_once(session, target, prompt, max_tokens))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - start


def level_metrics(results: list[StreamResult], duration_s: float, max_tokens: int) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    duration_s = max(duration_s, 1e-9)
    errors = Counter((r.error or "?").split(":")[0] for r in results if not r.ok)
    metrics: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration_s": round(duration_s, 3),
        "total_output_tokens": out_tokens,
        "request_throughput": round(len(ok) / duration_s, 3),
        "output_throughput": round(out_tokens / duration_s, 2),
        "mean_output_tokens": round(out_tokens / len(ok), 1) if ok else None,
        "hit_max_tokens": sum(1 for r in ok if r.output_tokens >= max_tokens),
        "usage_sources": dict(Counter(r.usage_source for r in ok)),
        "stale_connection_retries": sum(r.retries for r in results),
        "finish_reasons": dict(Counter(str(r.finish_reason) for r in ok)),
    }
    metrics |= summarize([r.ttft_s * 1000 for r in ok if r.ttft_s is not None], "ttft_ms")
    metrics |= summarize([r.tpot_s * 1000 for r in ok if r.tpot_s is not None], "tpot_ms")
    metrics |= summarize([x * 1000 for r in ok for x in r.itls_s], "itl_ms")
    metrics |= summarize([r.latency_s * 1000 for r in ok], "e2el_ms")
    if errors:
        metrics["errors"] = dict(errors)
        metrics["error_samples"] = [r.error for r in results if not r.ok][:3]
    return metrics
