"""The engine benchmark's figures and tables: per-round ratios of output_throughput between pairs of
contenders (the drift-proof headline figures, see engine_rounds.py), ratios of per-level figures,
and the tables engine.py prints.

The pairs: Slipstream vs. llama-server and vs. llama-cpp-python's server; with ``--native-baseline``
also the same two built as before issue 8 (slipstream-native/llama-server-native: is the gap the
same with -march=native?), and slipstream/slipstream-native, the price of the portable build.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchlib import print_table, ratio
from engine_contenders import CONTENDERS
from engine_rounds import per_round_ratio


def level(results: dict[str, Any], name: str, c: int) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results.get(name, {}).get("levels", {}).get(str(c))
    return found


def level_value(results: dict[str, Any], name: str, c: int, key: str) -> Any:
    return (level(results, name, c) or {}).get(key)


# num/den pairs compared round by round: Slipstream vs. the others built the same way, and the price
# of the portable build (issue 8) for Slipstream.
PAIRS = (
    ("slipstream", "llama-server"),
    ("slipstream", "llama-cpp-python"),
    ("slipstream-native", "llama-server-native"),
    ("slipstream", "slipstream-native"),
)


def round_ratios(args: argparse.Namespace, by_name: dict[str, Any]) -> dict[str, Any]:
    """num/den output_throughput, per round (same machine speed): the headline figures."""
    out: dict[str, Any] = {}
    for num, den in PAIRS:
        for c in args.levels:
            stats = per_round_ratio(level(by_name, num, c), level(by_name, den, c))
            if stats is not None:
                out[f"{num}/{den} output_throughput c={c}"] = stats
    return out


def ratios(args: argparse.Namespace, by_name: dict[str, Any], per_round: dict[str, Any]) -> dict[str, Any]:
    """Ratios of the per-level figures (medians over rounds); the scaling ones carry drift."""
    lo, hi = args.levels[0], args.levels[-1]
    out: dict[str, Any] = {}
    for num, den in PAIRS:
        if num not in by_name or den not in by_name:
            continue
        for c in (lo, hi):
            for key in ("output_throughput", "median_ttft_ms"):
                out[f"{num}/{den} {key} c={c}"] = ratio(
                    level_value(by_name, num, c, key), level_value(by_name, den, c, key)
                )
        # num's scaling relative to den's, from same-round ratios: free of drift.
        at_hi = per_round.get(f"{num}/{den} output_throughput c={hi}") or {}
        at_lo = per_round.get(f"{num}/{den} output_throughput c={lo}") or {}
        out[f"{num}/{den} scaling c={hi}/c={lo} (per-round medians)"] = ratio(at_hi.get("median"), at_lo.get("median"))
    for name in (n for n in CONTENDERS if n in by_name):
        out[f"{name} output_throughput c={hi}/c={lo}"] = ratio(
            level_value(by_name, name, hi, "output_throughput"), level_value(by_name, name, lo, "output_throughput")
        )
    return out


def headline(args: argparse.Namespace, per_round: dict[str, Any], ratio_map: dict[str, Any]) -> dict[str, Any]:
    lo, hi = args.levels[0], args.levels[-1]
    # Slipstream vs. llama-server, built portable (always) and native (with --native-baseline), and
    # the price of the portable build: slipstream/slipstream-native.
    pairs = [PAIRS[0], *(pair for pair in PAIRS[2:] if f"{pair[0]}/{pair[1]} output_throughput c={lo}" in per_round)]
    keys = [f"{num}/{den} output_throughput c={c}" for num, den in pairs for c in dict.fromkeys((lo, hi))]
    out = {f"{k} (median per-round)": (per_round.get(k) or {}).get("median") for k in keys}
    out[f"slipstream output_throughput c={hi}/c={lo}"] = ratio_map.get(f"slipstream output_throughput c={hi}/c={lo}")
    return out


def report(
    args: argparse.Namespace, contenders: list[dict[str, Any]], per_round: dict[str, Any], ratio_map: dict[str, Any]
) -> None:
    rows = []
    for c in contenders:
        if "levels" not in c:
            rows.append([c["name"], "-", "skipped" if "skipped" in c else "FAILED"] + ["-"] * 11)
            continue
        for lvl, m in c["levels"].items():
            rows.append([
                c["name"], lvl, m["rounds"], m["completed"], m["failed"], m["output_throughput"],
                min(m["round_output_throughput"]), max(m["round_output_throughput"]), m["pooled_output_throughput"],
                m["median_ttft_ms"], m["p99_ttft_ms"], m["median_itl_ms"], m["p99_itl_ms"], m["median_tpot_ms"],
            ])  # fmt: skip
    print_table(
        ["contender", "conc", "rounds", "ok", "failed", "tok/s p50", "min", "max", "pooled", "ttft p50",
         "ttft p99", "itl p50", "itl p99", "tpot p50"],
        rows,
        title=f"Engine: streaming chat, max_tokens={args.max_tokens}, {args.threads} threads, "
        f"{args.kv_type} KV, {args.gguf.name}; "
        "tok/s over rounds (p50, min, max, pooled), times in ms over all requests",
    )  # fmt: skip
    extra = [
        [c["name"], c.get("start_s"), c.get("idle_cpu_percent"), c.get("max_rss_mib"),
         (c.get("cold_start") or {}).get("median_cold_ttft_ms"), (c.get("warmup") or {}).get("failed")]
        for c in contenders
        if "levels" in c
    ]  # fmt: skip
    print_table(["contender", "start s", "idle CPU %", "max RSS MiB", "cold TTFT p50 ms", "warm-up failures"], extra)
    print_table(
        ["ratio (same round)", "median", "min", "max", "rounds"],
        [[k, v["median"], v["min"], v["max"], v["rounds"]] for k, v in per_round.items()],
        title="Per-round ratios: num/den output_throughput in the same round (drift-proof; quote the median)",
    )
    print_table(
        ["ratio", "value"],
        [[k, v] for k, v in ratio_map.items() if v is not None],
        title="Ratios of per-level figures (c=hi/c=lo compares levels run minutes apart: includes drift)",
    )
    for c in contenders:
        for reason in ("skipped", "failed"):
            if reason in c:
                print(f"{c['name']} {reason}: {c[reason]}")
