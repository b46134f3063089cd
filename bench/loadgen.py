"""A closed-loop HTTP load generator: one aiohttp session, keep-alive, N concurrent workers.

Run as its own process so that it does not share an interpreter (or a GIL) with the server
it measures. It reads one JSON spec on stdin and prints one JSON result on stdout::

    {"url": "http://127.0.0.1:8080/v1/chat/completions", "headers": {...}, "body": {...},
     "concurrency": 32, "requests": 3000, "duration_s": 20, "warmup_requests": 200,
     "warmup_s": 5, "stream": false, "timeout_s": 30}

Both loops are bounded by a request count and by time. A request counts as ok only with
HTTP 200 and a complete answer (``choices`` in a JSON body, or ``data: [DONE]`` in a stream).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from benchlib import percentile


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.url: str = spec["url"]
        self.headers = {"Content-Type": "application/json", **spec.get("headers", {})}
        self.body = orjson.dumps(spec["body"])
        self.stream = bool(spec.get("stream", False))
        self.concurrency = int(spec.get("concurrency", 1))
        self.timeout = aiohttp.ClientTimeout(total=float(spec.get("timeout_s", 30)))
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []

    async def one(self, session: aiohttp.ClientSession) -> tuple[bool, float, float]:
        """Return (ok, latency seconds, time to first body byte seconds)."""
        t0 = time.perf_counter()
        first = 0.0
        try:
            async with session.post(self.url, data=self.body, headers=self.headers) as resp:
                if self.stream:
                    done = False
                    async for line in resp.content:
                        if not first:
                            first = time.perf_counter()
                        if line.startswith(b"data: [DONE]"):
                            done = True
                    ok = resp.status == 200 and done
                    why = f"HTTP {resp.status}" if resp.status != 200 else "stream ended without [DONE]"
                else:
                    raw = await resp.read()
                    first = time.perf_counter()
                    ok = resp.status == 200 and bool(orjson.loads(raw).get("choices"))
                    why = f"HTTP {resp.status}" if resp.status != 200 else "no choices in body"
                    if not ok and len(self.error_samples) < 5:
                        self.error_samples.append(raw[:300].decode(errors="replace"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            ok, why = False, type(exc).__name__
            if len(self.error_samples) < 5:
                self.error_samples.append(repr(exc)[:300])
        end = time.perf_counter()
        if not ok:
            self.errors[why] += 1
        return ok, end - t0, (first or end) - t0

    async def loop(self, session: aiohttp.ClientSession, count: int, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        ttfbs: list[float] = []
        issued = failed = 0
        start = time.perf_counter()
        deadline = start + seconds
        last_end = start

        async def worker() -> None:
            nonlocal issued, failed, last_end
            while issued < count and time.perf_counter() < deadline:
                issued += 1
                ok, latency, ttfb = await self.one(session)
                last_end = time.perf_counter()
                if ok:
                    latencies.append(latency)
                    ttfbs.append(ttfb)
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        elapsed = max(last_end - start, 1e-9)
        ms = [x * 1000 for x in latencies]
        out: dict[str, Any] = {
            "requests": issued,
            "ok": len(latencies),
            "errors": failed,
            "elapsed_s": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1),
            "mean_ms": round(sum(ms) / len(ms), 3) if ms else None,
        }
        for q in (50, 90, 99):
            value = percentile(ms, q)
            out[f"p{q}_ms"] = None if value is None else round(value, 3)
        out["max_ms"] = round(max(ms), 3) if ms else None
        if self.stream:
            value = percentile([x * 1000 for x in ttfbs], 50)
            out["p50_ttfb_ms"] = None if value is None else round(value, 3)
        return out


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    load = Load(spec)
    connector = aiohttp.TCPConnector(limit=load.concurrency, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=load.timeout) as session:
        warmup = await load.loop(session, int(spec.get("warmup_requests", 100)), float(spec.get("warmup_s", 5)))
        warmup_errors = dict(load.errors)
        load.errors.clear()
        gc.collect()
        gc.freeze()
        result = await load.loop(session, int(spec["requests"]), float(spec["duration_s"]))
    result["error_kinds"] = dict(load.errors)
    result["warmup_requests"] = warmup["requests"]
    result["warmup_errors"] = warmup_errors
    result["error_samples"] = load.error_samples
    return result


def main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
        result["event_loop"] = "asyncio"
    else:
        result = uvloop.run(run(spec))
        result["event_loop"] = "uvloop"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
