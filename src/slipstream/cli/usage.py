"""``slipstream usage``: the ledger, grouped by key, model or day.

By default it reads the data directory's database directly (no server needed); with ``--api-url``
it asks a running server instead.
"""

from __future__ import annotations

import asyncio
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from slipstream.cli.client import ControlClient, TokenOption
from slipstream.cli.output import errors_as_exit, fail, print_csv, print_json, print_table

_NUMBERS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "total_tokens", "cost")
_LABELS = {"key": ("key_name", "key_uuid"), "model": ("model",), "day": ("day",)}


class By(StrEnum):
    key = "key"
    model = "model"
    day = "day"


class ReportOutput(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def usage_command(
    by: Annotated[By, typer.Option("--by", help="Group by key, model or UTC day.")] = By.key,
    since: Annotated[
        str | None, typer.Option("--since", help="Only usage on or after this UTC date (YYYY-MM-DD).")
    ] = None,
    output: Annotated[ReportOutput, typer.Option("--output", "-o", help="table, json or csv.")] = ReportOutput.table,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Read this data directory's database (default: $SLIPSTREAM_DATA_DIR)."),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="Ask this server instead of reading the database.")
    ] = None,
    token: TokenOption = None,
) -> None:
    """Report usage: requests, tokens and cost."""
    try:
        since_date = date.fromisoformat(since) if since else None
    except ValueError:
        raise fail(f"--since must be a date such as 2026-11-01, not {since!r}", "invalid_value") from None
    if api_url:
        with errors_as_exit():
            body = ControlClient(api_url, token).call("GET", "/v2/gen-ai/usage", query={"by": by.value, "since": since})
        rows: list[dict[str, Any]] = body["usage"]
    else:
        rows = _local_report(data_dir, by.value, since_date)
    _print(rows, by.value, output)


def _local_report(data_dir: Path | None, by: str, since: date | None) -> list[dict[str, Any]]:
    from sqlalchemy.engine import make_url

    from slipstream.config import ConfigError, load_settings

    try:
        settings = load_settings(data_dir=data_dir)
    except ConfigError as exc:
        raise fail(str(exc), "config_error") from None
    url = settings.resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise fail(f"no database at {parsed.database}; pass --data-dir or --api-url", "not_found")
    return asyncio.run(_report(url, by, since))


async def _report(url: str, by: str, since: date | None) -> list[dict[str, Any]]:
    from slipstream.ledger.reports import usage_report
    from slipstream.store.db import Database

    db = await Database.open(url)
    try:
        return await usage_report(db, by, since)  # type: ignore[arg-type]
    finally:
        await db.aclose()


def _print(rows: list[dict[str, Any]], by: str, output: ReportOutput) -> None:
    columns = [*_LABELS[by], *_NUMBERS]
    if output is ReportOutput.json:
        print_json({"usage": rows})
    elif output is ReportOutput.csv:
        print_csv(rows, columns)
    else:
        headers = {"key_name": "Key", "key_uuid": "UUID", "model": "Model", "day": "Day", "cost": "Cost (USD)"}
        print_table(
            rows,
            [(headers.get(c, c.replace("_", " ").capitalize()), c) for c in columns],
            right=[headers.get(c, c.replace("_", " ").capitalize()) for c in _NUMBERS],
            empty="No usage recorded yet.",
        )
