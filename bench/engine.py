"""Local engine throughput and latency: Slipstream's runner vs. llama-cpp-python's server vs. llama-server.

All contenders serve the same GGUF (default: the built-in SmolLM2-135M-Instruct Q4_1) with the same
number of threads. Each is started, warmed up, measured at every concurrency level, and stopped
before the next one starts, so that two models never share the machine's cores. Requests are
streaming chat completions with the same prompts, ``max_tokens`` and ``temperature: 0``, and every
contender is told to keep generating up to ``max_tokens`` (see engine_contenders.py).

Metrics use vLLM's names (engine_client.py): output_throughput, ttft_ms, itl_ms, tpot_ms. For
Slipstream it also measures cold starts: on a fresh gateway with no runner loaded, the time from a
request to its first token, on a catalog entry with ``keep_alive: 0`` so each trial starts cold.

The load client runs in this process (uvloop + one pooled aiohttp session); at tens to hundreds of
tokens per second its cost is small next to the model's, and it is the same for every contender.

One-time, opt-in set-up (both are cached under .cache/, which git ignores):

    python bench/engine.py --setup-llama-cpp-python --setup-only   # .cache/bench-venv
    python bench/engine.py --build-llama-server --setup-only       # .cache/llama-server/ (~7 min)

Then:

    python bench/engine.py                                          # all contenders, c=1,2,4,8
    python bench/engine.py --contenders slipstream,llama-server --requests-per-level 32 --max-tokens 128

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
    print_table,
    process_rss_bytes,
    ratio,
    utc_stamp,
    write_results,
)
from engine_client import PROMPTS, level_metrics, run_level, stream_once
from engine_contenders import (
    CONTENDERS,
    Contender,
    Settings,
    SlipstreamContender,
    Unavailable,
    build_llama_server,
    find_llama_server,
    setup_llama_cpp_python_server,
)

NAME = "engine"
WARMUP_TOKENS = 16
COLD_TOKENS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated, from: " + ", ".join(CONTENDERS))
    p.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels (default 1,2,4,8)")
    p.add_argument("--requests-per-level", type=int, default=16, help="requests per level (at least the level)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--level-timeout", type=float, default=300.0, help="stop issuing requests after this many s")
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--cold-starts", type=int, default=3, help="Slipstream cold-start trials (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8, help="slots for Slipstream and llama-server")
    p.add_argument("--ctx", type=int, default=2048, help="context per sequence (slot)")
    p.add_argument("--gguf", type=Path, default=None, help="default: the built-in SmolLM2-135M-Instruct Q4_1")
    p.add_argument("--setup-llama-cpp-python", action="store_true", help="create .cache/bench-venv first")
    p.add_argument("--build-llama-server", action="store_true", help="build .cache/llama-server/ if missing")
    p.add_argument("--setup-only", action="store_true", help="do the set-up steps, then exit")
    p.add_argument("--no-json", action="store_true", help="print tables only; write no result files")
    args = p.parse_args(argv)
    args.levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    args.names = [x.strip() for x in args.contenders.split(",") if x.strip()]
    unknown = [n for n in args.names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    if not args.levels or args.levels[0] < 1 or args.max_tokens < 2 or args.requests_per_level < 1:
        p.error("levels, --max-tokens (>= 2) and --requests-per-level must be positive")
    if args.gguf is None:
        from slipstream.catalog import builtin_gguf_path

        args.gguf = builtin_gguf_path()
    args.gguf = args.gguf.resolve()
    return args


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


async def measure(args: argparse.Namespace, contender: Contender) -> dict[str, Any]:
    out: dict[str, Any] = {"name": contender.name, "levels": {}, "loadavg_before": os.getloadavg()}
    started = time.perf_counter()
    target = await asyncio.to_thread(contender.start)
    out["start_s"] = round(time.perf_counter() - started, 2)
    out["info"] = contender.info
    if isinstance(contender, SlipstreamContender) and args.cold_starts > 0:
        out["cold_start"] = await cold_starts(args, contender)
    async with new_session(args) as session:
        # Warm-up: load the model (a cold start for Slipstream), then fill every slot once.
        warm = [await stream_once(session, target, PROMPTS[0], WARMUP_TOKENS)]
        results, _ = await run_level(
            session, target, max(args.levels), max(args.levels), WARMUP_TOKENS, args.level_timeout
        )
        warm += results
        out["warmup"] = {"completed": sum(r.ok for r in warm), "failed": sum(not r.ok for r in warm)}
        if not warm[0].ok:
            out["warmup"]["error"] = warm[0].error
        rss = []
        for c in args.levels:
            n = max(args.requests_per_level, c)
            print(f"... {contender.name} c={c} ({n} requests)", file=sys.stderr, flush=True)
            results, duration = await run_level(session, target, c, n, args.max_tokens, args.level_timeout)
            out["levels"][str(c)] = level_metrics(results, duration, args.max_tokens)
            if contender.pid is not None:
                rss.append(process_rss_bytes(contender.pid) or 0)
        out["max_rss_mib"] = round(max(rss) / 2**20, 1) if rss else None
    return out


def run_contender(args: argparse.Namespace, contender: Contender) -> dict[str, Any]:
    try:
        contender.check()
    except Unavailable as exc:
        print(f"skipping {contender.name}: {exc}", file=sys.stderr, flush=True)
        return {"name": contender.name, "skipped": str(exc)}
    print(f"== {contender.name}", file=sys.stderr, flush=True)
    try:
        return _run(measure(args, contender))
    except (RuntimeError, OSError) as exc:
        print(f"{contender.name} failed: {exc}", file=sys.stderr, flush=True)
        return {"name": contender.name, "failed": str(exc)[-2000:]}
    finally:
        contender.stop()


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def level(results: dict[str, Any], name: str, c: int, key: str) -> Any:
    return (results.get(name, {}).get("levels", {}).get(str(c)) or {}).get(key)


def ratios(args: argparse.Namespace, by_name: dict[str, Any]) -> dict[str, Any]:
    lo, hi = args.levels[0], args.levels[-1]
    out: dict[str, Any] = {}
    for other in ("llama-server", "llama-cpp-python"):
        for c in (lo, hi):
            out[f"slipstream/{other} output_throughput c={c}"] = ratio(
                level(by_name, "slipstream", c, "output_throughput"), level(by_name, other, c, "output_throughput")
            )
            out[f"slipstream/{other} median_ttft_ms c={c}"] = ratio(
                level(by_name, "slipstream", c, "median_ttft_ms"), level(by_name, other, c, "median_ttft_ms")
            )
    for name in CONTENDERS:
        out[f"{name} output_throughput c={hi}/c={lo}"] = ratio(
            level(by_name, name, hi, "output_throughput"), level(by_name, name, lo, "output_throughput")
        )
    return out


def report(args: argparse.Namespace, contenders: list[dict[str, Any]], ratio_map: dict[str, Any]) -> None:
    rows = []
    for c in contenders:
        if "levels" not in c:
            rows.append([c["name"], "-", "skipped" if "skipped" in c else "FAILED"] + ["-"] * 9)
            continue
        for lvl, m in c["levels"].items():
            rows.append([
                c["name"], lvl, m["completed"], m["failed"], m["output_throughput"], m["request_throughput"],
                m["median_ttft_ms"], m["p99_ttft_ms"], m["median_itl_ms"], m["p99_itl_ms"], m["median_tpot_ms"],
                m["mean_output_tokens"],
            ])  # fmt: skip
    print_table(
        ["contender", "conc", "ok", "failed", "out tok/s", "req/s", "ttft p50", "ttft p99", "itl p50",
         "itl p99", "tpot p50", "out tok/req"],
        rows,
        title=f"Engine: streaming chat, max_tokens={args.max_tokens}, {args.threads} threads, "
        f"{args.gguf.name} (times in ms)",
    )  # fmt: skip
    extra = [
        [c["name"], c.get("start_s"), c.get("max_rss_mib"), (c.get("cold_start") or {}).get("median_cold_ttft_ms"),
         (c.get("warmup") or {}).get("failed")]
        for c in contenders
        if "levels" in c
    ]  # fmt: skip
    print_table(["contender", "start s", "max RSS MiB", "cold TTFT p50 ms", "warm-up failures"], extra)
    print_table(["ratio", "value"], [[k, v] for k, v in ratio_map.items() if v is not None], title="Ratios")
    for c in contenders:
        for reason in ("skipped", "failed"):
            if reason in c:
                print(f"{c['name']} {reason}: {c[reason]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    if args.setup_llama_cpp_python:
        print(f"llama-cpp-python server venv ready: {setup_llama_cpp_python_server()}", file=sys.stderr)
    if args.build_llama_server:
        binary = find_llama_server() or build_llama_server()
        print(f"llama-server: {binary}", file=sys.stderr)
    if args.setup_only:
        return 0
    stamp = utc_stamp()
    machine = machine_info()
    results = []
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-engine-") as tmp:
        settings = Settings(args.gguf, args.threads, args.parallel, args.ctx, Path(tmp))
        for name in args.names:
            results.append(run_contender(args, CONTENDERS[name](name, settings)))
    by_name = {c["name"]: c for c in results if "levels" in c}
    ratio_map = ratios(args, by_name)
    report(args, results, ratio_map)
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
            "concurrency": args.levels,
            "requests_per_level": args.requests_per_level,
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "prompts": PROMPTS,
            "cold_start_trials": args.cold_starts,
            "load_client": "in-process: uvloop + one pooled aiohttp session",
        },
        "contenders": results,
        "ratios": ratio_map,
        "failed_requests_total": failures,
    }
    if not args.no_json:
        stamped, latest = write_results(NAME, data)
        print(f"wrote {stamped} and {latest.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
