"""Chat traffic: multi-turn conversations that share system prompts (issue 11), Slipstream vs. llama-server.

Run it as ``python bench/engine.py --scenario chat [options]`` (or ``python bench/chat_traffic.py``).
Users are spread round-robin over ``--apps`` applications, each with its own generated system prompt
of about ``--system-tokens`` tokens (chat_client.py). Every user runs a conversation of ``--turns``
turns, one after another: a short question, a streamed reply of up to ``--max-tokens`` tokens
(``temperature: 0``, a fixed seed, no ``ignore_eos``), then the next turn at once, sending the whole
history (system prompt, earlier questions and the assistant's actual replies). Users run
concurrently. The system prompts stay the same across rounds, as an application's would; the
questions change every round.

The contenders are started once with the same GGUF, threads, slots, context per slot and KV type
(defaults: 2 threads, 8 slots of 4096 tokens, q8_0; llama-server runs ``-np 8 -c 32768 -ctk q8_0
-ctv q8_0``) and stay loaded. Each is warmed up with one turn per application, then ``--warmup-rounds``
untimed runs of the whole workload (other questions), so that round 1 finds the slots as steady
traffic leaves them, as later rounds do. Then rounds: in each,
every contender runs the whole workload once, in an order rotated each round (engine_rounds.py).
``--contenders slipstream,llama-server,llama-cpp-python`` adds llama-cpp-python's server (one context:
it serves one request at a time, the others queue); it reports no cached tokens, so its cached
fraction shows as n/a, and its output tokens are counted as content chunks when it sends no usage.

Reported per contender: TTFT p50/p99 over all requests and per turn, the largest TTFT over the
median (fairness), wall time and output tokens/s (medians over rounds), and the fraction of prompt
tokens served from cache. Ratios Slipstream/llama-server (and Slipstream/llama-cpp-python, when it
ran) are taken per round; quote their median. JSON goes to
bench/results/engine-chat-<preset or "custom">-<UTC>.json.

Presets (users x turns, in 1 application on 8 slots unless said; explicit options override a
preset's values, ``--parallel`` included):

    python bench/engine.py --scenario chat --preset 8x4          # 8 users x 4 turns
    python bench/engine.py --scenario chat --preset 8x1          # 8 users x 1 turn
    python bench/engine.py --scenario chat --preset 1x4          # 1 user x 4 turns
    python bench/engine.py --scenario chat --preset 16x4         # 16 users x 4 turns: more users than slots
    python bench/engine.py --scenario chat --preset 16-apps4     # 16 users x 4 turns in 4 applications
    python bench/engine.py --scenario chat --preset 16-apps4-p4  # the same on 4 slots (--parallel 4)

16-apps4-p4 is the "beyond llama-server" variant: llama-server reuses a slot's cache only for a
prompt similar enough to what that slot holds (``--slot-prompt-similarity``), while ours can copy
any prefix that any slot holds, which should count when 16 conversations in 4 applications take
turns on 4 slots. Its ``--parallel 4`` applies to both servers (llama-server ``-np 4 -c 16384``).

One long prompt arriving while 7 streams decode is a scenario of its own (long_prompt.py):
``python bench/engine.py --scenario long-prompt``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from benchlib import install_sigterm_handler, machine_info, percentile, print_table, ratio, utc_stamp, write_results
from chat_client import Turn, chat_turn, question, system_prompt
from engine_client import Target
from engine_contenders import CONTENDERS, Contender, Settings, Unavailable
from engine_rounds import rotated

PRESETS: dict[str, dict[str, int]] = {
    "8x4": {"users": 8, "turns": 4, "apps": 1},
    "8x1": {"users": 8, "turns": 1, "apps": 1},
    "1x4": {"users": 1, "turns": 4, "apps": 1},
    "16x4": {"users": 16, "turns": 4, "apps": 1},  # more users than slots
    "16-apps4": {"users": 16, "turns": 4, "apps": 4},
    # Many applications, few slots: llama-server reuses a slot's cache only for a similar prompt
    # (--slot-prompt-similarity); ours can copy any prefix any slot holds.
    "16-apps4-p4": {"users": 16, "turns": 4, "apps": 4, "parallel": 4},
}
DEFAULTS = {"users": 8, "turns": 4, "apps": 1, "parallel": 8}  # a preset's missing keys take these
PAIR = ("slipstream", "llama-server")
PAIRS = (PAIR, ("slipstream", "llama-cpp-python"))  # num/den, compared round by round


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="users/turns/apps (and slots) of a named variant"
    )
    p.add_argument("--users", type=int, default=None, help="concurrent conversations (default 8)")
    p.add_argument("--turns", type=int, default=None, help="turns per conversation (default 4)")
    p.add_argument("--apps", type=int, default=None, help="applications: distinct system prompts (default 1)")
    p.add_argument("--system-tokens", type=int, default=830, help="system prompt length, about (default 830)")
    p.add_argument("--max-tokens", type=int, default=48, help="reply length limit (default 48)")
    p.add_argument("--seed", type=int, default=11, help="prompts and sampling seed")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--warmup-rounds", type=int, default=1,
        help="untimed runs of the whole workload per contender before round 1, with other questions (default 1)",
    )  # fmt: skip
    p.add_argument("--contenders", default=",".join(PAIR), help="comma-separated, from: " + ", ".join(CONTENDERS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=None, help="slots for Slipstream and llama-server (default 8)")
    p.add_argument("--ctx", type=int, default=4096, help="context per slot")
    p.add_argument("--kv-type", choices=("f16", "q8_0"), default="q8_0")
    p.add_argument("--gguf", type=Path, default=None, help="default: the built-in SmolLM2-135M-Instruct Q4_1")
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, PRESETS[args.preset].get(key, default) if args.preset else default)
    args.names = list(dict.fromkeys(x.strip() for x in args.contenders.split(",") if x.strip()))
    if unknown := [n for n in args.names if n not in CONTENDERS]:
        p.error(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    sizes = (args.users, args.turns, args.apps, args.rounds, args.system_tokens, args.parallel)
    if min(sizes) < 1 or args.max_tokens < 2:
        p.error("--users, --turns, --apps, --rounds, --system-tokens, --parallel must be positive; --max-tokens >= 2")
    if args.warmup_rounds < 0:
        p.error("--warmup-rounds must not be negative")
    if args.gguf is None:
        from slipstream.catalog import builtin_gguf_path

        args.gguf = builtin_gguf_path()
    args.gguf = args.gguf.resolve()
    args.systems = [system_prompt(args.seed, a, args.system_tokens) for a in range(args.apps)]
    return args


async def conversation(
    args: argparse.Namespace, session: aiohttp.ClientSession, target: Target, user: int, round_index: int
) -> list[Turn]:
    app = user % args.apps
    messages = [{"role": "system", "content": args.systems[app]}]
    turns: list[Turn] = []
    for t in range(1, args.turns + 1):
        messages.append({"role": "user", "content": question(args.seed, round_index, user, t)})
        result = await chat_turn(session, target, list(messages), args.max_tokens, args.seed, (user, app, t))
        turns.append(result)
        if not result.ok:
            break  # the rest of this conversation would send a broken history
        messages.append({"role": "assistant", "content": result.reply})
    return turns


async def workload(
    args: argparse.Namespace, session: aiohttp.ClientSession, target: Target, round_index: int
) -> tuple[list[Turn], float]:
    started = time.perf_counter()
    convs = await asyncio.gather(*(conversation(args, session, target, u, round_index) for u in range(args.users)))
    return [t for c in convs for t in c], time.perf_counter() - started


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def metrics(turns: list[Turn], wall_s: float | None = None) -> dict[str, Any]:
    ok = [t for t in turns if t.ok]
    ttfts = [t.ttft_s for t in ok if t.ttft_s is not None]
    prompt = sum(t.prompt_tokens or 0 for t in ok if t.cached_tokens is not None)
    cached = sum(t.cached_tokens or 0 for t in ok)
    p50 = percentile(ttfts, 50)
    out: dict[str, Any] = {
        "requests": len(turns), "completed": len(ok), "failed": len(turns) - len(ok),
        "median_ttft_ms": ms(p50), "p99_ttft_ms": ms(percentile(ttfts, 99)),
        "max_ttft_ms": ms(max(ttfts, default=None)),
        "max_over_median_ttft": ratio(max(ttfts, default=None), p50),
        "output_tokens": sum(t.output_tokens for t in ok), "prompt_tokens": sum(t.prompt_tokens or 0 for t in ok),
        "cached_fraction": ratio(cached, prompt), "cached_sources": sorted({t.cached_source for t in ok}),
    }  # fmt: skip
    if wall_s is not None:
        out["wall_s"] = round(wall_s, 3)
        out["output_throughput"] = round(out["output_tokens"] / max(wall_s, 1e-9), 2)
    if errors := [t.error for t in turns if not t.ok]:
        out["error_samples"] = errors[:3]
    return out


def aggregate(args: argparse.Namespace, rounds: list[tuple[list[Turn], float]]) -> dict[str, Any]:
    pooled = [t for turns, _ in rounds for t in turns]
    out = metrics(pooled)
    per_round = [metrics(turns, wall) for turns, wall in rounds]
    out["wall_s"] = percentile([r["wall_s"] for r in per_round], 50)
    out["output_throughput"] = percentile([r["output_throughput"] for r in per_round], 50)
    out["first_turn_prompt_tokens"] = percentile(
        [t.prompt_tokens for t in pooled if t.turn == 1 and t.prompt_tokens], 50
    )
    out["per_turn"] = {str(k): metrics([t for t in pooled if t.turn == k]) for k in range(1, args.turns + 1)}
    out["per_round"] = per_round
    return out


def round_ratios(results: dict[str, Any], pair: tuple[str, str] = PAIR) -> dict[str, Any]:
    """num/den (default Slipstream/llama-server) per round (same minutes, same machine speed), and their medians."""
    num, den = (results.get(n, {}).get("chat", {}).get("per_round") for n in pair)
    if not num or not den:
        return {}
    out: dict[str, Any] = {}
    for key in ("median_ttft_ms", "p99_ttft_ms", "wall_s", "output_throughput"):
        values = [v for a, b in zip(num, den, strict=False) if (v := ratio(a.get(key), b.get(key))) is not None]
        out[key] = {"median": percentile(values, 50), "per_round": values}
    return out


async def start(args: argparse.Namespace, contender: Contender, out: dict[str, Any]) -> Target | None:
    print(f"== starting {contender.name}", file=sys.stderr, flush=True)
    try:
        contender.check()
        target = await asyncio.to_thread(contender.start)
    except (RuntimeError, OSError, Unavailable) as exc:
        print(f"{contender.name} unavailable: {exc}", file=sys.stderr, flush=True)
        out["failed"] = str(exc)[-2000:]
        return None
    out["info"] = contender.info
    return target


def alive(contender: Contender, out: dict[str, Any]) -> bool:
    """False, with its log's tail recorded and printed once, if the contender's server has exited."""
    proc = contender.proc
    if proc is not None and not proc.alive() and "died" not in out:
        out["died"] = f"exited with {proc.popen.returncode}:\n{proc.log_tail()}"
        print(f"{contender.name} {out['died']}", file=sys.stderr, flush=True)
    return "died" not in out


R = TypeVar("R")


async def interleaved(
    args: argparse.Namespace,
    contenders: list[Contender],
    connections: int,
    warm_up: Callable[[aiohttp.ClientSession, Target], Awaitable[list[Turn]]],
    run_round: Callable[[aiohttp.ClientSession, Target, int], Awaitable[R]],
    describe: Callable[[R], str],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[R]]]:
    """Start each contender and warm it up, then ``args.rounds`` rounds in which every live one runs
    ``run_round`` once, in an order rotated each round; returns per-contender records and results."""
    outs: dict[str, dict[str, Any]] = {c.name: {"name": c.name} for c in contenders}
    live: list[tuple[Contender, Target, aiohttp.ClientSession]] = []
    rounds: dict[str, list[R]] = {}
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    try:
        for c in contenders:
            if (target := await start(args, c, outs[c.name])) is None:
                continue
            # keepalive under llama-server's 5 s, as engine.py
            connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=3)
            session = aiohttp.ClientSession(connector=connector, timeout=timeout)
            live.append((c, target, session))
            outs[c.name]["warmup_failed"] = [t.error for t in await warm_up(session, target) if not t.ok]
            c.after_warmup()
        for r in range(args.rounds):
            for c, target, session in rotated(live, r):
                if not alive(c, outs[c.name]):
                    continue
                result = await run_round(session, target, r)
                rounds.setdefault(c.name, []).append(result)
                print(f"... round {r + 1}/{args.rounds} {c.name}: {describe(result)}", file=sys.stderr, flush=True)
    finally:
        for _, _, session in live:
            await session.close()
    for c, _, _ in live:
        alive(c, outs[c.name])
    return outs, rounds


async def measure(args: argparse.Namespace, contenders: list[Contender]) -> dict[str, Any]:
    async def warm_up(session: aiohttp.ClientSession, target: Target) -> list[Turn]:
        warm = [
            await chat_turn(session, target, [{"role": "system", "content": s}, {"role": "user", "content": "Hi"}],
                            args.max_tokens, args.seed, (-1, a, 0))
            for a, s in enumerate(args.systems)
        ]  # fmt: skip
        for w in range(args.warmup_rounds):  # steady state: slots hold what this traffic leaves there
            warm += (await workload(args, session, target, -1 - w))[0]
        return warm

    def describe(result: tuple[list[Turn], float]) -> str:
        turns, wall = result
        m = metrics(turns, wall)
        return (f"wall {wall:.2f} s, TTFT p50 {m['median_ttft_ms']} ms p99 {m['p99_ttft_ms']} ms, "
                f"cached {m['cached_fraction']}, failed {m['failed']}")  # fmt: skip

    async def run_round(session: aiohttp.ClientSession, target: Target, r: int) -> tuple[list[Turn], float]:
        return await workload(args, session, target, r)

    outs, rounds = await interleaved(args, contenders, args.users + 2, warm_up, run_round, describe)
    for name, rs in rounds.items():
        outs[name]["chat"] = aggregate(args, rs)
    return outs


def cached_cell(m: dict[str, Any]) -> Any:
    """The cached fraction, or n/a when the server reported no cached tokens at all (not 0)."""
    return "n/a" if m["cached_fraction"] is None and m["cached_sources"] in ([], ["none"]) else m["cached_fraction"]


def report(
    args: argparse.Namespace, results: dict[str, Any], ratios: dict[str, Any], others: dict[str, Any] | None = None
) -> None:
    """``ratios``: Slipstream/llama-server; ``others``: further pairs ("num/den" -> ratios), if any ran."""
    rows = []
    for name, c in results.items():
        if "chat" not in c:
            rows.append([name, "FAILED", *["-"] * 9])
            continue
        m = c["chat"]
        rows.append([
            name, m["completed"], m["failed"], m["median_ttft_ms"], m["p99_ttft_ms"], m["max_over_median_ttft"],
            m["wall_s"], m["output_throughput"], cached_cell(m), m["first_turn_prompt_tokens"],
            ",".join(m["cached_sources"]),
        ])  # fmt: skip
    print_table(
        ["contender", "ok", "failed", "ttft p50", "ttft p99", "max/p50", "wall s", "tok/s", "cached",
         "turn-1 prompt", "cached from"],
        rows,
        title=f"Chat traffic: {args.users} users x {args.turns} turns in {args.apps} app(s), system prompt "
        f"~{args.system_tokens} tokens, max_tokens={args.max_tokens}, {args.rounds} round(s), {args.parallel} slots "
        f"x {args.ctx}, {args.threads} threads, {args.kv_type} KV, {args.gguf.name}; times in ms, wall and tok/s "
        "medians over rounds",
    )  # fmt: skip
    turn_rows = [
        [name, k, t["completed"], t["median_ttft_ms"], t["p99_ttft_ms"], cached_cell(t)]
        for name, c in results.items()
        if "chat" in c
        for k, t in c["chat"]["per_turn"].items()
    ]
    print_table(["contender", "turn", "ok", "ttft p50", "ttft p99", "cached"], turn_rows, title="Per turn")
    print_ratio_tables({"slipstream/llama-server": ratios, **(others or {})})


def print_ratio_tables(tables: dict[str, dict[str, Any]]) -> None:
    """Per-round ratio tables, one per pair ("num/den" -> metric -> {median, per_round})."""
    first = True
    for pair, values in tables.items():
        if not values:
            continue
        print_table(
            [pair, "median", "per round"],
            [[k, v["median"], " ".join(f"{x:.3f}" for x in v["per_round"])] for k, v in values.items()],
            title="Per-round ratios (same minutes; quote the median)" if first else None,
        )
        first = False


def run_contenders(args: argparse.Namespace, measure: Any, prefix: str) -> dict[str, Any]:
    """Start ``args.names`` on one shared temporary directory, run ``measure(args, contenders)``, stop them."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        settings = Settings(args.gguf, args.threads, args.parallel, args.ctx, Path(tmp), args.kv_type)
        contenders = [CONTENDERS[name](name, settings) for name in args.names]
        try:
            return _run(measure(args, contenders))  # type: ignore[no-any-return]
        finally:
            for c in contenders:
                c.stop()


def save(
    name: str, benchmark: str, args: argparse.Namespace, started: tuple[str, float], fields: dict[str, Any]
) -> None:
    """Write the run's JSON (``started``: UTC stamp and perf_counter at the start)."""
    stamp, t0 = started
    options = {k: v for k, v in vars(args).items() if k not in ("systems", "names")}
    data = {
        "benchmark": benchmark, "timestamp": stamp, "machine": machine_info(),
        "options": {**options, "gguf": str(args.gguf), "contenders": args.names},
        "duration_s": round(time.perf_counter() - t0, 1), **fields,
    }  # fmt: skip
    stamped, latest = write_results(name, data)
    print(f"wrote {stamped} and {latest.name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    started = utc_stamp(), time.perf_counter()
    results = run_contenders(args, measure, "slipstream-bench-chat-")
    ratios = round_ratios(results)
    others = {f"{num}/{den}": r for num, den in PAIRS[1:] if (r := round_ratios(results, (num, den)))}
    report(args, results, ratios, others)
    if not args.no_json:
        fields = {"contenders": list(results.values()), "per_round_ratios": ratios,
                  **({"other_per_round_ratios": others} if others else {})}  # fmt: skip
        save(f"engine-chat-{args.preset or 'custom'}", "engine-chat", args, started, fields)
    return 0


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
