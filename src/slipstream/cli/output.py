"""Printing: Rich tables for people, JSON (and CSV for reports) for scripts, errors on stderr.

Everything from the server (key names, model ids, causes) is data, never Rich markup: a key
named ``[/x]`` would otherwise crash the table that shows it. Cells are escaped here; a column
that wants style returns a ``rich.text.Text``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from slipstream.cli.client import ApiError

_PIPE_WIDTH = 160


def console() -> Console:
    """A terminal-sized console; piped output gets a wide one so ids are not folded."""
    out = Console()
    return out if out.is_terminal else Console(width=_PIPE_WIDTH)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def print_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str | Callable[[dict[str, Any]], Any]]],
    *,
    title: str | None = None,
    right: Sequence[str] = (),
    nowrap: Sequence[str] = ("UUID", "Key", "ID"),
    empty: str = "Nothing to show.",
) -> None:
    """``columns`` are (header, key or function of the row) pairs; ``nowrap`` columns are never folded
    (ids are for copying)."""
    out = console()
    if not rows:
        out.print(empty)
        return
    table = Table(title=title, header_style="bold")
    for header, _ in columns:
        table.add_column(
            header, justify="right" if header in right else "left", overflow="fold", no_wrap=header in nowrap
        )
    for row in rows:
        table.add_row(*(_cell(row, get) for _, get in columns))
    out.print(table)


def _cell(row: dict[str, Any], get: str | Callable[[dict[str, Any]], Any]) -> str | Text:
    value = get(row) if callable(get) else row.get(get)
    if isinstance(value, Text):
        return value
    return "" if value is None else escape(str(value))


def when(value: str | None, missing: str = "never") -> str:
    """ISO-8601 ``...Z`` shortened to ``YYYY-MM-DD HH:MM:SS`` for tables."""
    if not value:
        return missing
    return value.replace("T", " ").removesuffix("Z").split(".")[0]


def fail(message: str, code: str) -> typer.Exit:
    typer.echo(f"Error: {message} ({code})", err=True)
    return typer.Exit(1)


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """Turn an ``ApiError`` into ``Error: <message> (<code>)`` on stderr and exit status 1."""
    try:
        yield
    except ApiError as exc:
        raise fail(exc.message, exc.code) from None
