"""``slipstream admin``: local, break-glass operations on the admin token (no server needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from slipstream.cli.output import fail

app = typer.Typer(help="Admin token operations.", no_args_is_help=True)


@app.command("new-token")
def new_token() -> None:
    """Print a fresh admin token, e.g. to set SLIPSTREAM_ADMIN_TOKEN before the first start."""
    from slipstream.auth.keys import generate_admin_token

    typer.echo(generate_admin_token())


@app.command("rotate-token")
def rotate_token(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="The server's data directory (default: $SLIPSTREAM_DATA_DIR).")
    ] = None,
    accept_new_secret: Annotated[
        bool,
        typer.Option(
            "--accept-new-secret",
            help="Re-bind the database to the current server secret; keys made under the old one stop working.",
        ),
    ] = False,
) -> None:
    """Replace the admin token in the database and print the new one (running servers switch within 1 s)."""
    from slipstream.auth.admin import AdminAuth
    from slipstream.auth.secret import load_or_create_server_secret
    from slipstream.config import ConfigError, load_settings
    from slipstream.store.db import Database

    async def rotate() -> str:
        settings = load_settings(data_dir=data_dir)
        secret = load_or_create_server_secret(settings.data_dir)
        db = await Database.open(settings.resolved_database_url)
        try:
            _, token = await AdminAuth.rotate(db, secret, accept_new_secret=accept_new_secret)
        finally:
            await db.aclose()
        return token

    try:
        token = asyncio.run(rotate())
    except ConfigError as exc:
        raise fail(str(exc), "config_error") from None
    typer.echo(
        "New admin token (shown once; running servers accept only this one within a second). "
        "Update $SLIPSTREAM_ADMIN_TOKEN wherever it is set: servers started with the old value warn and keep this one.",
        err=True,
    )
    typer.echo(token)
