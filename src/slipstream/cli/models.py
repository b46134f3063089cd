"""``slipstream models`` and ``slipstream regions``: what the server offers, and what is loaded now."""

from __future__ import annotations

from typing import Any

import typer

from slipstream.cli.client import DEFAULT_API_URL, ApiUrlOption, ControlClient, Output, OutputOption, TokenOption
from slipstream.cli.output import errors_as_exit, print_json, print_table

models_app = typer.Typer(help="Models in the catalog, and the local runners serving them.", no_args_is_help=True)
regions_app = typer.Typer(help="Regions this deployment serves.", no_args_is_help=True)


def _mib(row: dict[str, Any]) -> str:
    rss = row.get("rss_bytes")
    return "" if rss is None else f"{int(rss) / 2**20:.0f} MiB"


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
    """Show the local runners that are loaded now."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("GET", "/v2/gen-ai/runners")
    if output is Output.json:
        print_json(body)
        return
    print_table(
        body["runners"],
        [
            ("Model", "model"),
            ("PID", "pid"),
            ("Memory", _mib),
            ("Active", lambda r: "yes" if r.get("active") else "no"),
            ("Idle (s)", "idle_for_s"),
            ("Keep alive (s)", "keep_alive_s"),
            ("Slots", lambda r: f"{r.get('slots_in_use', 0)}/{r.get('parallel', '?')}"),
            ("Queued", "queued"),
        ],
        right=("PID", "Memory", "Idle (s)", "Keep alive (s)", "Queued"),
        empty="No models are loaded.",
    )


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
