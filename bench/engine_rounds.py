"""Interleaved rounds: how the engine benchmark stays fair on a machine whose speed drifts.

On a small shared VM the speed of the whole machine drifts by 10-25 % over minutes, so measuring
all of one contender's levels and then all of another's compares two different machines. Instead,
every contender stays loaded (an idle server uses no CPU; engine.py measures and reports that), and
for each concurrency level the benchmark runs rounds: round r measures every contender once, in an
order rotated each round (ABC, BCA, CAB, ...), each with the same small batch of requests.

Contenders measured in the same round see nearly the same machine, so the ratio of their figures
*in that round* is nearly free of drift. The median of those per-round ratios, with their min and
max, is the figure to quote. Per contender and level, output_throughput is the median of the
per-round figures (the pooled figure, all tokens over all round time, is kept beside it), and the
latency percentiles (TTFT, ITL, TPOT, E2EL) pool every request of every round.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from benchlib import percentile, process_rss_bytes
from engine_client import StreamResult, Target, level_metrics, run_level
from engine_contenders import Contender

T = TypeVar("T")


@dataclass
class Round:
    index: int
    results: list[StreamResult]
    duration_s: float


@dataclass
class Live:
    """A started, warmed-up contender, and the rounds measured on it so far."""

    contender: Contender
    target: Target
    session: aiohttp.ClientSession
    max_rss_bytes: int = 0
    rounds: dict[int, list[Round]] = field(default_factory=dict)  # concurrency level -> rounds
    died: str | None = None

    @property
    def name(self) -> str:
        return self.contender.name

    def check_alive(self) -> bool:
        proc = self.contender.proc
        if self.died is None and proc is not None and not proc.alive():
            self.died = f"exited with {proc.popen.returncode} during the run:\n{proc.log_tail()}"
            print(f"{self.name} {self.died}", file=sys.stderr, flush=True)
        return self.died is None


def rotated(items: Sequence[T], r: int) -> list[T]:
    """Round r's order: ABC, BCA, CAB, ABC, ..."""
    k = r % len(items) if items else 0
    return [*items[k:], *items[:k]]


async def run_rounds(
    live: list[Live], level: int, rounds: int, requests: int, max_tokens: int, round_timeout_s: float
) -> None:
    """``rounds`` rounds at one concurrency level; each contender gets ``requests`` requests per round."""
    for r in range(rounds):
        for lv in rotated(live, r):
            if not lv.check_alive():
                continue
            results, duration = await run_level(lv.session, lv.target, level, requests, max_tokens, round_timeout_s)
            lv.rounds.setdefault(level, []).append(Round(r, results, duration))
            if lv.contender.pid is not None:
                lv.max_rss_bytes = max(lv.max_rss_bytes, process_rss_bytes(lv.contender.pid) or 0)
            tokens = sum(x.output_tokens for x in results if x.ok)
            failed = sum(not x.ok for x in results)
            print(
                f"... c={level} round {r + 1}/{rounds} {lv.name}: {tokens / max(duration, 1e-9):.1f} tok/s"
                + (f", {failed} failed" if failed else ""),
                file=sys.stderr,
                flush=True,
            )


def aggregate(rounds: list[Round], max_tokens: int) -> dict[str, Any]:
    """One level's metrics: pooled over all rounds, with output_throughput the median of the rounds'."""
    per_round = [level_metrics(rd.results, rd.duration_s, max_tokens)["output_throughput"] for rd in rounds]
    pooled = [x for rd in rounds for x in rd.results]
    metrics = level_metrics(pooled, sum(rd.duration_s for rd in rounds), max_tokens)
    metrics["pooled_output_throughput"] = metrics["output_throughput"]
    metrics["output_throughput"] = _round(percentile(per_round, 50), 2)
    metrics["rounds"] = len(rounds)
    metrics["round_indices"] = [rd.index for rd in rounds]
    metrics["round_output_throughput"] = per_round
    return metrics


def per_round_ratio(num: dict[str, Any] | None, den: dict[str, Any] | None) -> dict[str, Any] | None:
    """num/den output_throughput in each round both ran; the median, min and max of those ratios."""
    if not num or not den:
        return None
    den_by_round = dict(zip(den["round_indices"], den["round_output_throughput"], strict=True))
    values = [
        round(x / den_by_round[r], 4)
        for r, x in zip(num["round_indices"], num["round_output_throughput"], strict=True)
        if den_by_round.get(r)
    ]
    if not values:
        return None
    return {
        "median": _round(percentile(values, 50), 3),
        "min": min(values),
        "max": max(values),
        "rounds": len(values),
        "per_round": values,
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
