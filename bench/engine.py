"""Local engine throughput and latency: Slipstream's runner vs. llama-cpp-python's server vs. llama-server.

All contenders serve the same GGUF (default: the built-in SmolLM2-135M-Instruct Q4_1) with the same
number of threads and the same KV cache type (``--kv-type``: default q8_0, Slipstream's catalog
default, for half the memory; f16 is llama.cpp's own default). Requests are streaming chat completions
with the same prompts, ``max_tokens`` and ``temperature: 0``, and every contender is told to keep
generating up to ``max_tokens`` (see engine_contenders.py). Every stream is checked for
completeness; failures are counted.

The machine's speed drifts by 10-25 % over minutes on a small VM, so contenders are not measured one
after another. All of them are started once and stay loaded: an idle server uses no CPU (each one's
CPU use over a few idle seconds is measured after warm-up and reported as ``idle_cpu_percent``;
measured with psutil, and checked with ``top``: under 1 % for each, the Slipstream gateway with its
runner loaded included). Then, for each concurrency level, interleaved rounds (engine_rounds.py): round r
measures every contender once, in an order rotated each round, with ``--requests-per-round``
requests (default max(level, 4)). The figure to quote is the median of the per-round ratios
Slipstream/other (same round, same machine speed), with min and max. Per contender and level,
output_throughput is the median of its per-round figures (pooled figure beside it); TTFT/ITL/TPOT
percentiles pool all requests. The c=8/c=1 scaling compares levels measured minutes apart, so it
carries drift; its ratio to llama-server's scaling (from the per-round ratios) does not.

Metrics use vLLM's names (engine_client.py): output_throughput, ttft_ms, itl_ms, tpot_ms. For
Slipstream it also measures cold starts first, before its warm-up: the time from a request to its
first token with no runner loaded, on a catalog entry with ``keep_alive: 0`` so each trial starts
cold, and otherwise the built-in default model's own settings (context, slots, KV type), since
those decide how much KV memory a start allocates (the other contenders are loaded but idle
meanwhile).

The load client runs in this process (uvloop + one pooled aiohttp session per contender); at tens
to hundreds of tokens per second its cost is small next to the model's, and the same for everyone.

One-time, opt-in set-up (engine_builds.py; all cached under .cache/, which git ignores):

    python bench/engine.py --setup-llama-cpp-python --setup-only   # .cache/bench-venv
    python bench/engine.py --build-llama-server --setup-only       # .cache/llama-server/ (~7 min)
    python bench/engine.py --native-baseline --setup-only          # .cache/llama-native/ (~10 min)

llama-server is built with the CMake flags scripts/engine_cmake_args.py prints, the ones ``make``
builds Slipstream's llama-cpp-python with, and each contender's JSON records how it was built.
``--native-baseline`` adds the build from before issue 8 (-march=native) as two more contenders,
slipstream-native (the same gateway and runner on native libllama/libggml) and llama-server-native,
and the per-round ratios slipstream-native/llama-server-native and slipstream/slipstream-native.

Then:

    python bench/engine.py --scenario chat --preset 8x4   # chat traffic instead (chat_traffic.py; --help)
    python bench/engine.py --scenario long-prompt         # a long prompt while 7 streams decode (long_prompt.py)
    python bench/engine.py            # c=1,2,4,8, 5 rounds: about 7 minutes on 2 cores
    python bench/engine.py --contenders slipstream,llama-server --rounds 9 --max-tokens 256
    python bench/engine.py --contenders slipstream,llama-server --native-baseline --concurrency 1,8

With the defaults each round asks 4, 4, 4 and 8 requests of 128 tokens (c=1,2,4,8) of each
contender (20 requests per round in all); llama-cpp-python serves one request at a time at ~60 tok/s,
so it takes the longest (~4 of the ~7 minutes; under 10 even if the machine runs 25 % slow).
Results: tables on stdout, and JSON in bench/results/engine-<UTC>.json and engine-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchlib import (
    install_sigterm_handler,
    machine_info,
    percentile,
    process_cpu_seconds,
    utc_stamp,
    write_results,
)
from engine_builds import build_llama_server, build_native_baseline, setup_llama_cpp_python_server
from engine_client import PROMPTS, run_level, stream_once
from engine_contenders import CONTENDERS, NATIVE_CONTENDERS, Contender, Settings, SlipstreamContender, Unavailable
from engine_report import headline, ratios, report, round_ratios
from engine_rounds import Live, aggregate, run_rounds

NAME = "engine"
WARMUP_TOKENS = 16
COLD_TOKENS = 8
IDLE_WINDOW_S = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = [n for n in CONTENDERS if n not in NATIVE_CONTENDERS]
    p.add_argument("--contenders", default=",".join(default), help="comma-separated, from: " + ", ".join(CONTENDERS))
    p.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels (default 1,2,4,8)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per level (default 5)")
    p.add_argument(
        "--requests-per-round", type=int, default=None, help="per contender, round and level (default max(level, 4))"
    )
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--round-timeout", type=float, default=120.0, help="stop issuing a round's requests after this")
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--cold-starts", type=int, default=3, help="Slipstream cold-start trials (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8, help="slots for Slipstream and llama-server")
    p.add_argument("--ctx", type=int, default=2048, help="context per sequence (slot)")
    p.add_argument(
        "--kv-type", choices=("f16", "q8_0"), default="q8_0",
        help="KV cache type for every contender (default q8_0, Slipstream's catalog default; f16 is llama.cpp's)",
    )  # fmt: skip
    p.add_argument("--gguf", type=Path, default=None, help="default: the built-in SmolLM2-135M-Instruct Q4_1")
    p.add_argument("--setup-llama-cpp-python", action="store_true", help="create .cache/bench-venv first")
    p.add_argument(
        "--build-llama-server", action="store_true",
        help="build .cache/llama-server/ with scripts/engine_cmake_args.py's flags, unless already built with them",
    )  # fmt: skip
    p.add_argument(
        "--native-baseline", action="store_true",
        help="build .cache/llama-native/ (-march=native, as before issue 8) if missing, and add "
        + " and ".join(NATIVE_CONTENDERS),
    )  # fmt: skip
    p.add_argument("--setup-only", action="store_true", help="do the set-up steps, then exit")
    p.add_argument("--no-json", action="store_true", help="print tables only; write no result files")
    args = p.parse_args(argv)
    args.levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    names = [x.strip() for x in args.contenders.split(",") if x.strip()]
    args.names = list(dict.fromkeys(names + list(NATIVE_CONTENDERS if args.native_baseline else ())))
    unknown = [n for n in args.names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    if not args.levels or args.levels[0] < 1 or args.max_tokens < 2 or args.rounds < 1:
        p.error("levels, --rounds and --max-tokens (>= 2) must be positive")
    if args.requests_per_round is not None and args.requests_per_round < 1:
        p.error("--requests-per-round must be positive")
    if args.gguf is None:
        from slipstream.catalog import builtin_gguf_path

        args.gguf = builtin_gguf_path()
    args.gguf = args.gguf.resolve()
    return args


def requests_per_round(args: argparse.Namespace, level: int) -> int:
    """At least the level, so that every round reaches its concurrency."""
    return max(level, args.requests_per_round or 4)


def new_session(args: argparse.Namespace) -> aiohttp.ClientSession:
    # Idle connections are dropped after 3 s, before llama-server's 5 s keep-alive timeout does.
    connector = aiohttp.TCPConnector(limit=max(args.levels) + 2, keepalive_timeout=3)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=args.request_timeout))


async def cold_starts(args: argparse.Namespace, contender: SlipstreamContender) -> dict[str, Any]:
    """Time to first token with no runner loaded, on the keep_alive: 0 entry; one trial at a time."""
    target = contender.target_for(contender.COLD_MODEL)
    trials: list[dict[str, Any]] = []
    async with new_session(args) as session:
        for i in range(args.cold_starts):
            if not await asyncio.to_thread(contender.wait_no_runner, 60.0):
                trials.append({"ok": False, "error": "a runner was still loaded after 60 s"})
                break
            r = await stream_once(session, target, PROMPTS[i % len(PROMPTS)], COLD_TOKENS)
            trials.append({
                "ok": r.ok, "ttft_ms": None if r.ttft_s is None else round(r.ttft_s * 1000, 1),
                "e2el_ms": round(r.latency_s * 1000, 1), "error": r.error,
            })  # fmt: skip
            print(f"    cold start {i + 1}: {trials[-1]}", file=sys.stderr, flush=True)
        await asyncio.to_thread(contender.wait_no_runner, 60.0)
    values = [t["ttft_ms"] for t in trials if t.get("ok") and t.get("ttft_ms") is not None]
    p50 = percentile(values, 50)
    return {
        "trials": trials,
        "completed": len(values),
        "median_cold_ttft_ms": None if p50 is None else round(p50, 1),
        "max_cold_ttft_ms": max(values) if values else None,
    }


async def start(args: argparse.Namespace, contender: Contender, out: dict[str, Any]) -> Live | None:
    """Start one contender, measure Slipstream's cold starts, then warm up. None if it failed."""
    print(f"== starting {contender.name}", file=sys.stderr, flush=True)
    out["loadavg_before"] = os.getloadavg()
    started = time.perf_counter()
    try:
        target = await asyncio.to_thread(contender.start)
    except (RuntimeError, OSError, Unavailable) as exc:
        print(f"{contender.name} failed to start: {exc}", file=sys.stderr, flush=True)
        out["failed"] = str(exc)[-2000:]
        contender.stop()
        return None
    out["start_s"] = round(time.perf_counter() - started, 2)
    out["info"] = contender.info
    if isinstance(contender, SlipstreamContender) and args.cold_starts > 0:
        out["cold_start"] = await cold_starts(args, contender)
    live = Live(contender, target, new_session(args))
    # Warm-up: load the model (a cold start for Slipstream), then fill every slot once.
    warm = [await stream_once(live.session, target, PROMPTS[0], WARMUP_TOKENS)]
    level = max(args.levels)
    results, _ = await run_level(live.session, target, level, level, WARMUP_TOKENS, args.round_timeout)
    warm += results
    out["warmup"] = {"completed": sum(r.ok for r in warm), "failed": sum(not r.ok for r in warm)}
    if not warm[0].ok:
        out["warmup"]["error"] = warm[0].error
    try:  # which llama.cpp libraries it really runs (the runner, for Slipstream)
        contender.after_warmup()
    except RuntimeError as exc:
        print(f"{contender.name}: {exc}", file=sys.stderr, flush=True)
        out["failed"] = str(exc)
        await live.session.close()
        contender.stop()
        return None
    return live


async def idle_cpu_percent(live: list[Live]) -> dict[str, float | None]:
    """Each contender's CPU use (its process tree) while all sit idle and loaded, over a few seconds."""
    before = {lv.name: process_cpu_seconds(lv.contender.pid) if lv.contender.pid else None for lv in live}
    t0 = time.perf_counter()
    await asyncio.sleep(IDLE_WINDOW_S)
    elapsed = time.perf_counter() - t0
    out: dict[str, float | None] = {}
    for lv in live:
        after = process_cpu_seconds(lv.contender.pid) if lv.contender.pid else None
        b = before[lv.name]
        out[lv.name] = None if b is None or after is None else round(100 * (after - b) / elapsed, 2)
    return out


async def measure_all(args: argparse.Namespace, contenders: list[Contender]) -> list[dict[str, Any]]:
    outs: dict[str, dict[str, Any]] = {}
    live: list[Live] = []
    try:
        for contender in contenders:
            outs[contender.name] = out = {"name": contender.name}
            try:
                contender.check()
            except Unavailable as exc:
                print(f"skipping {contender.name}: {exc}", file=sys.stderr, flush=True)
                out["skipped"] = str(exc)
                continue
            if (lv := await start(args, contender, out)) is not None:
                live.append(lv)
        idle = await idle_cpu_percent(live)
        print(f"idle CPU % while loaded: {idle}", file=sys.stderr, flush=True)
        for c in args.levels:
            n = requests_per_round(args, c)
            print(f"== c={c}: {args.rounds} rounds of {n} requests each", file=sys.stderr, flush=True)
            await run_rounds(live, c, args.rounds, n, args.max_tokens, args.round_timeout)
    finally:
        for lv in live:
            await lv.session.close()
    for lv in live:
        out = outs[lv.name]
        out["idle_cpu_percent"] = idle.get(lv.name)
        out["levels"] = {str(c): aggregate(rounds, args.max_tokens) for c, rounds in lv.rounds.items()}
        out["max_rss_mib"] = round(lv.max_rss_bytes / 2**20, 1) if lv.max_rss_bytes else None
        if lv.died:
            out["failed"] = lv.died[-2000:]
    return list(outs.values())


def run_all(args: argparse.Namespace, contenders: list[Contender]) -> list[dict[str, Any]]:
    try:
        return _run(measure_all(args, contenders))
    finally:
        for contender in contenders:
            contender.stop()


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--scenario", "chat"]:  # multi-turn chat traffic (issue 11): its own options
        from chat_traffic import main as chat_main

        return chat_main(argv[2:])
    if argv[:2] == ["--scenario", "long-prompt"]:  # a long prompt while 7 streams decode (issue 11)
        from long_prompt import main as long_prompt_main

        return long_prompt_main(argv[2:])
    if argv[:2] == ["--scenario", "decode"]:
        argv = argv[2:]
    args = parse_args(argv)
    install_sigterm_handler()
    if args.setup_llama_cpp_python:
        print(f"llama-cpp-python server venv ready: {setup_llama_cpp_python_server()}", file=sys.stderr)
    if args.build_llama_server:
        print(f"llama-server: {build_llama_server()}", file=sys.stderr)
    if args.native_baseline:
        print(f"native baseline: {build_native_baseline()}", file=sys.stderr)
    if args.setup_only:
        return 0
    stamp = utc_stamp()
    machine = machine_info()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-engine-") as tmp:
        settings = Settings(args.gguf, args.threads, args.parallel, args.ctx, Path(tmp), args.kv_type)
        results = run_all(args, [CONTENDERS[name](name, settings) for name in args.names])
    by_name = {c["name"]: c for c in results if "levels" in c}
    per_round = round_ratios(args, by_name)
    ratio_map = ratios(args, by_name, per_round)
    report(args, results, per_round, ratio_map)
    failures = sum(m["failed"] for c in by_name.values() for m in c["levels"].values())
    data = {
        "benchmark": NAME,
        "timestamp": stamp,
        "machine": machine,
        "config": {
            "gguf": str(args.gguf),
            "threads": args.threads,
            "parallel": args.parallel,
            "ctx_per_sequence": args.ctx,
            "kv_cache_type": args.kv_type,
            "concurrency": args.levels,
            "rounds": args.rounds,
            "requests_per_round": {str(c): requests_per_round(args, c) for c in args.levels},
            "order": "all contenders loaded at once; per level, interleaved rounds, order rotated each round",
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "prompts": PROMPTS,
            "cold_start_trials": args.cold_starts,
            "native_baseline": any(n in NATIVE_CONTENDERS for n in args.names),  # info: how each was built
            "load_client": "in-process: uvloop + one pooled aiohttp session per contender",
        },
        "duration_s": round(time.perf_counter() - started, 1),
        "headline": headline(args, per_round, ratio_map),
        "contenders": results,
        "per_round_ratios": per_round,
        "ratios": ratio_map,
        "failed_requests_total": failures,
    }
    if not args.no_json:
        stamped, latest = write_results(NAME, data)
        print(f"wrote {stamped} and {latest.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
