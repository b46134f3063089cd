"""``slipstream models`` and ``slipstream regions``: what the server offers, and what is loaded now."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import typer

from slipstream.cli.client import DEFAULT_API_URL, ApiUrlOption, ControlClient, Output, OutputOption, TokenOption
from slipstream.cli.output import errors_as_exit, print_json, print_table

models_app = typer.Typer(help="Models in the catalog, and the local runners serving them.", no_args_is_help=True)
regions_app = typer.Typer(help="Regions this deployment serves.", no_args_is_help=True)


def _mib(row: dict[str, Any]) -> str:
    rss = row.get("rss_bytes")
    return "" if rss is None else f"{int(rss) / 2**20:.0f} MiB"


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _since(row: dict[str, Any]) -> str:
    loaded = datetime.fromtimestamp(float(row.get("loaded_at", 0)), tz=UTC)
    return loaded.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def _keep_alive(row: dict[str, Any]) -> str:
    keep = float(row.get("keep_alive_s", 0))
    return "forever" if keep < 0 else _ago(keep)


@models_app.command("list")
def list_models(
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List the catalog, with prices in USD per 1M tokens."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("GET", "/v2/gen-ai/models")
    if output is Output.json:
        print_json(body)
        return
    print_table(
        body["models"],
        [
            ("ID", "id"),
            ("Provider", "provider"),
            ("Region", "region"),
            ("Context", "context_length"),
            ("Input $/1M", lambda m: m["prices"]["input"]),
            ("Cached $/1M", lambda m: m["prices"]["cached_input"]),
            ("Output $/1M", lambda m: m["prices"]["output"]),
        ],
        right=("Context", "Input $/1M", "Cached $/1M", "Output $/1M"),
        empty="The catalog is empty.",
    )


@models_app.command("ps")
def running(
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show the local runners that are loaded now, and models backing off after a failed start."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("GET", "/v2/gen-ai/runners")
    if output is Output.json:
        print_json(body)
        return
    rows = body["runners"]
    failing = [r for r in rows if r.get("state", "loaded") != "loaded"]
    print_table(
        [r for r in rows if r.get("state", "loaded") == "loaded"],
        [
            ("Model", "model"),
            ("PID", "pid"),
            ("Memory", _mib),
            ("Loaded since", _since),
            ("Idle for", lambda r: _ago(float(r.get("idle_for_s", 0))) if not r.get("active") else "busy"),
            ("Active", "active"),
            ("Queued", "queued"),
            ("Context", "context_length"),
            ("Slots", lambda r: f"{r.get('slots_in_use', 0)}/{r.get('parallel', '?')}"),
            ("Keep alive", _keep_alive),
        ],
        right=("PID", "Memory", "Active", "Queued", "Context", "Slots"),
        empty="No models are loaded.",
    )
    if failing:
        print_table(
            failing,
            [
                ("Model", "model"),
                ("State", "state"),
                ("Failures", "failures"),
                ("Retry in", _retry_in),
                ("Cause", "cause"),
            ],
            title="Failed to start",
            right=("Failures", "Retry in"),
        )


def _retry_in(row: dict[str, Any]) -> str:
    left = float(row.get("retry_in_s", 0))
    return f"{math.ceil(left)}s" if left > 0 else "next request"


@regions_app.command("list")
def list_regions(
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List regions and their inference URLs."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("GET", "/v2/gen-ai/regions")
    if output is Output.json:
        print_json(body)
        return
    print_table(
        body["regions"],
        [
            ("Region", "region"),
            ("Inference URL", "inference_url"),
            ("Streaming URL", "stream_inference_url"),
            ("Inference", lambda r: "yes" if r.get("serves_inference") else "no"),
            ("Batch", lambda r: "yes" if r.get("serves_batch") else "no"),
        ],
    )
