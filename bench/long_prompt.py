"""One long prompt arriving while other streams decode (issue 11): how long its prefill stalls them.

Run it as ``python bench/engine.py --scenario long-prompt [options]`` (or ``python bench/long_prompt.py``).
In each round, ``--streams`` (default 7) streams start at once with short generated questions and
decode long replies: ``--decode-tokens`` (default 256) tokens with the target's "keep generating"
switch (``ignore_eos``, or llama-cpp-python's logit_bias; engine_contenders.py), as the decode
scenario does. Once all of them have produced their first token, one long prompt of about
``--long-tokens`` (default 3,000) tokens arrives: pseudo-random text generated from the seed and the
round by the same word list as chat_client.system_prompt, so it is new every round and cannot be
served from any cache (its reported ``cached_tokens`` shows that), with a reply of
``--long-max-tokens`` tokens. Then the round waits for every stream to end.

Measured per round, from every content chunk's arrival time (chat_client.Turn.stamps):

- the long prompt's TTFT, from its send to its first content chunk (its prefill window);
- the decoding streams' inter-token latency (the gaps between a stream's consecutive chunks) p50
  and p99 over the whole round, and over the prefill window only: the gaps that overlap it (start
  before the long prompt's first token and end after it was sent), so a stall that straddles
  either edge counts whole; with the largest such gap, and how many streams were still decoding
  when the window closed (if some had ended, ``--decode-tokens`` is too small for this machine).

The contenders are started once with the same GGUF, threads, slots, context per slot and KV type
as in chat_traffic.py (defaults: 2 threads, 8 slots of 4096 tokens, q8_0) and stay loaded. Each is
warmed up with one short request, then ``--warmup-rounds`` untimed rounds (other texts); then
rounds, every contender once per round in an order rotated each round (engine_rounds.py).
Reported per contender: the long prompt's TTFT (median and largest over rounds), the ITL
percentiles pooled over all rounds, and decode tokens/s (median over rounds); and the ratios
Slipstream/llama-server (and Slipstream/llama-cpp-python, if it ran) per round, whose median is the
figure to quote. llama-cpp-python's server runs one request at a time, so its streams do not
decode concurrently at all; it is not in the default contenders. JSON goes to
bench/results/engine-long-prompt-<UTC>.json.

    python bench/engine.py --scenario long-prompt                  # 7 streams x 256 tokens, ~3,000-token prompt
    python bench/engine.py --scenario long-prompt --rounds 5 --long-tokens 2000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp

from benchlib import install_sigterm_handler, percentile, print_table, ratio, utc_stamp
from chat_client import Turn, chat_turn, prose, question
from chat_traffic import interleaved, ms, print_ratio_tables, run_contenders, save
from engine_client import Target
from engine_contenders import CONTENDERS, Contender

NAME = "engine-long-prompt"
PAIRS = (("slipstream", "llama-server"), ("slipstream", "llama-cpp-python"))  # num/den, round by round
RATIO_KEYS = ("long_ttft_ms", "median_itl_ms", "p99_itl_ms", "median_window_itl_ms", "p99_window_itl_ms")
LONG_USER = -1  # Turn.user of the long prompt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=7, help="decoding streams (default 7)")
    p.add_argument("--decode-tokens", type=int, default=256, help="reply length of each decoding stream (default 256)")
    p.add_argument("--long-tokens", type=int, default=3000, help="long prompt length, about (default 3000)")
    p.add_argument("--long-max-tokens", type=int, default=8, help="the long prompt's reply length (default 8)")
    p.add_argument("--seed", type=int, default=11, help="prompts and sampling seed")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup-rounds", type=int, default=1, help="untimed rounds per contender first (default 1)")
    p.add_argument(
        "--contenders", default="slipstream,llama-server", help="comma-separated, from: " + ", ".join(CONTENDERS)
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8, help="slots for Slipstream and llama-server (default 8)")
    p.add_argument("--ctx", type=int, default=4096, help="context per slot")
    p.add_argument("--kv-type", choices=("f16", "q8_0"), default="q8_0")
    p.add_argument("--gguf", type=Path, default=None, help="default: the built-in SmolLM2-135M-Instruct Q4_1")
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    args.names = list(dict.fromkeys(x.strip() for x in args.contenders.split(",") if x.strip()))
    if unknown := [n for n in args.names if n not in CONTENDERS]:
        p.error(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    if min(args.streams, args.rounds, args.long_tokens, args.long_max_tokens) < 1 or args.decode_tokens < 2:
        p.error("--streams, --rounds, --long-tokens, --long-max-tokens must be positive; --decode-tokens >= 2")
    if args.warmup_rounds < 0:
        p.error("--warmup-rounds must not be negative")
    if args.streams >= args.parallel:
        p.error("--parallel must exceed --streams: the long prompt needs a free slot")
    if args.gguf is None:
        from slipstream.catalog import builtin_gguf_path

        args.gguf = builtin_gguf_path()
    args.gguf = args.gguf.resolve()
    return args


def long_document(seed: int, round_index: int, tokens: int) -> str:
    """A text of about ``tokens`` tokens, different for every round, and a request to summarise it."""
    rng = random.Random(f"long:{seed}:{round_index}")
    report = prose(rng, f"Report {rng.randrange(10**9)} from the archive of round {round_index}.", tokens)
    return report + "\n\nSummarise the report above in one sentence."


def decode_prompt(seed: int, round_index: int, stream: int) -> str:
    return f"Answer at length, with many details. {question(seed, round_index, stream, 1)}"


@dataclass
class RoundResult:
    index: int
    decoders: list[Turn]
    long: Turn
    wall_s: float


async def one_round(
    args: argparse.Namespace, session: aiohttp.ClientSession, target: Target, round_index: int
) -> RoundResult:
    """The streams start; when each has its first token (or has failed), the long prompt is sent."""
    started = time.perf_counter()
    firsts = [asyncio.Event() for _ in range(args.streams)]

    async def decoder(i: int) -> Turn:
        messages = [{"role": "user", "content": decode_prompt(args.seed, round_index, i)}]
        try:
            return await chat_turn(
                session, target, messages, args.decode_tokens, args.seed, (i, 0, 1), target.extra_body, firsts[i]
            )
        finally:
            firsts[i].set()  # also when it failed before its first token: the round goes on

    tasks = [asyncio.create_task(decoder(i)) for i in range(args.streams)]
    await asyncio.gather(*(e.wait() for e in firsts))
    messages = [{"role": "user", "content": long_document(args.seed, round_index, args.long_tokens)}]
    long = await chat_turn(
        session, target, messages, args.long_max_tokens, args.seed, (LONG_USER, 0, 1), target.extra_body
    )
    decoders = list(await asyncio.gather(*tasks))
    return RoundResult(round_index, decoders, long, time.perf_counter() - started)


def gaps(turns: list[Turn]) -> list[tuple[float, float]]:
    """(start, end) of every gap between consecutive content chunks of each stream."""
    return [g for t in turns for g in pairwise(t.stamps)]


def window(result: RoundResult) -> tuple[float, float] | None:
    """The long prompt's prefill: from its send to its first content chunk; None if it never came."""
    long = result.long
    return None if long.ttft_s is None else (long.started, long.started + long.ttft_s)


def window_gaps(result: RoundResult) -> list[float]:
    """The decoding streams' gaps that overlap the long prompt's prefill window."""
    w = window(result)
    if w is None:
        return []
    lo, hi = w
    return [b - a for a, b in gaps([t for t in result.decoders if t.ok]) if a < hi and b > lo]


def itl_metrics(overall: list[float], in_window: list[float]) -> dict[str, Any]:
    return {
        "median_itl_ms": ms(percentile(overall, 50)), "p99_itl_ms": ms(percentile(overall, 99)),
        "max_itl_ms": ms(max(overall, default=None)), "window_gaps": len(in_window),
        "median_window_itl_ms": ms(percentile(in_window, 50)), "p99_window_itl_ms": ms(percentile(in_window, 99)),
        "max_window_itl_ms": ms(max(in_window, default=None)),
    }  # fmt: skip


def round_metrics(result: RoundResult) -> dict[str, Any]:
    ok = [t for t in result.decoders if t.ok]
    long, w = result.long, window(result)
    tokens = sum(t.output_tokens for t in ok)
    out: dict[str, Any] = {
        "round": result.index, "wall_s": round(result.wall_s, 3),
        "decoders_completed": len(ok), "decoders_failed": len(result.decoders) - len(ok),
        "decode_output_tokens": tokens, "decode_output_throughput": round(tokens / max(result.wall_s, 1e-9), 2),
        "long_ok": long.ok, "long_ttft_ms": ms(long.ttft_s) if long.ok else None,
        "long_prompt_tokens": long.prompt_tokens, "long_cached_tokens": long.cached_tokens,
        "decoders_started_before_long": sum(1 for t in result.decoders if t.stamps and t.stamps[0] <= long.started),
        "decoders_alive_at_long_first_token": None if w is None else sum(1 for t in ok if t.stamps[-1] >= w[1]),
        **itl_metrics([b - a for a, b in gaps(ok)], window_gaps(result)),
    }  # fmt: skip
    if errors := [t.error for t in [*result.decoders, long] if not t.ok]:
        out["error_samples"] = errors[:3]
    return out


def median_int(values: list[int]) -> int | None:
    p50 = percentile(values, 50)
    return None if p50 is None else round(p50)


def aggregate(results: list[RoundResult]) -> dict[str, Any]:
    """ITL percentiles pooled over all rounds; the long prompt's TTFT and tokens/s over rounds."""
    per_round = [round_metrics(r) for r in results]
    ttfts = [m["long_ttft_ms"] for m in per_round if m["long_ttft_ms"] is not None]
    ok = [t for r in results for t in r.decoders if t.ok]
    cached = [m["long_cached_tokens"] for m in per_round if m["long_cached_tokens"] is not None]
    return {
        "rounds": len(results), "long_completed": sum(m["long_ok"] for m in per_round),
        "decoders_completed": len(ok), "decoders_failed": sum(m["decoders_failed"] for m in per_round),
        "long_ttft_ms": percentile(ttfts, 50), "max_long_ttft_ms": max(ttfts, default=None),
        "long_prompt_tokens": median_int([m["long_prompt_tokens"] for m in per_round if m["long_prompt_tokens"]]),
        "max_long_cached_tokens": max(cached, default=None),
        "min_decoders_alive_at_long_first_token": min(
            (n for m in per_round if (n := m["decoders_alive_at_long_first_token"]) is not None), default=None
        ),
        "decode_output_throughput": percentile([m["decode_output_throughput"] for m in per_round], 50),
        **itl_metrics([b - a for a, b in gaps(ok)], [g for r in results for g in window_gaps(r)]),
        "per_round": per_round,
    }  # fmt: skip


def round_ratios(results: dict[str, Any], pair: tuple[str, str]) -> dict[str, Any]:
    """num/den per round (same minutes, same machine speed), and their medians."""
    num, den = (results.get(n, {}).get("long_prompt", {}).get("per_round") for n in pair)
    if not num or not den:
        return {}
    out: dict[str, Any] = {}
    for key in RATIO_KEYS:
        values = [v for a, b in zip(num, den, strict=False) if (v := ratio(a.get(key), b.get(key))) is not None]
        out[key] = {"median": percentile(values, 50), "per_round": values}
    return out


async def measure(args: argparse.Namespace, contenders: list[Contender]) -> dict[str, Any]:
    async def warm_up(session: aiohttp.ClientSession, target: Target) -> list[Turn]:
        hello = [{"role": "user", "content": "Hi"}]
        warm = [await chat_turn(session, target, hello, 4, args.seed, (0, 0, 0), target.extra_body)]
        for w in range(args.warmup_rounds):  # other texts: negative round indices
            warm_round = await one_round(args, session, target, -1 - w)
            warm += [*warm_round.decoders, warm_round.long]
        return warm

    def describe(result: RoundResult) -> str:
        m = round_metrics(result)
        return (f"long TTFT {m['long_ttft_ms']} ms ({m['long_prompt_tokens']} tokens, {m['long_cached_tokens']} "
                f"cached), ITL p50/p99 {m['median_itl_ms']}/{m['p99_itl_ms']} ms, in window "
                f"{m['median_window_itl_ms']}/{m['p99_window_itl_ms']} ms, "
                f"failed {m['decoders_failed'] + (not m['long_ok'])}")  # fmt: skip

    async def run_round(session: aiohttp.ClientSession, target: Target, r: int) -> RoundResult:
        return await one_round(args, session, target, r)

    outs, rounds = await interleaved(args, contenders, args.streams + 3, warm_up, run_round, describe)
    for name, rs in rounds.items():
        outs[name]["long_prompt"] = aggregate(rs)
    return outs


def report(args: argparse.Namespace, results: dict[str, Any], ratios: dict[str, dict[str, Any]]) -> None:
    rows = []
    for name, c in results.items():
        if "long_prompt" not in c:
            rows.append([name, "FAILED", *["-"] * 12])
            continue
        m = c["long_prompt"]
        rows.append([
            name, f"{m['long_completed']}/{m['rounds']}", m["decoders_failed"], m["long_prompt_tokens"],
            m["max_long_cached_tokens"], m["long_ttft_ms"], m["max_long_ttft_ms"], m["median_itl_ms"],
            m["p99_itl_ms"], m["median_window_itl_ms"], m["p99_window_itl_ms"], m["max_window_itl_ms"],
            m["min_decoders_alive_at_long_first_token"], m["decode_output_throughput"],
        ])  # fmt: skip
    print_table(
        ["contender", "long ok", "failed", "long tokens", "cached", "long ttft", "max", "itl p50", "itl p99",
         "win p50", "win p99", "win max", "alive", "tok/s"],
        rows,
        title=f"Long prompt while decoding: {args.streams} streams x {args.decode_tokens} tokens, then a prompt of "
        f"~{args.long_tokens} tokens (new each round, max_tokens={args.long_max_tokens}); {args.rounds} round(s), "
        f"{args.parallel} slots x {args.ctx}, {args.threads} threads, {args.kv_type} KV, {args.gguf.name}. "
        "Times in ms; long ttft: median over rounds; itl: the streams' gaps over all rounds, win: those overlapping "
        "the long prompt's prefill; alive: fewest streams still decoding when it ended; tok/s: decode, median",
    )  # fmt: skip
    print_ratio_tables(ratios)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    started = utc_stamp(), time.perf_counter()
    results = run_contenders(args, measure, "slipstream-bench-long-")
    ratios = {f"{num}/{den}": r for num, den in PAIRS if (r := round_ratios(results, (num, den)))}
    report(args, results, ratios)
    if not args.no_json:
        save(NAME, NAME, args, started, {"contenders": list(results.values()), "per_round_ratios": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
