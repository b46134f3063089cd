"""The ``slipstream`` command: ``serve``, plus a doctl-like client of the control API."""

from __future__ import annotations

import typer


def build_cli() -> typer.Typer:
    """Assemble the command tree (nothing is built at import time)."""
    from slipstream.cli import admin, keys, models, usage
    from slipstream.cli.doctor import doctor_command
    from slipstream.cli.serve import serve_command

    app = typer.Typer(
        name="slipstream",
        help="Self-hostable serverless inference: one OpenAI-compatible API in front of many models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.command("serve")(serve_command)
    app.add_typer(keys.app, name="keys")
    app.add_typer(models.models_app, name="models")
    app.add_typer(models.regions_app, name="regions")
    app.command("usage")(usage.usage_command)
    app.add_typer(admin.app, name="admin")
    app.command("doctor")(doctor_command)
    return app


def main() -> None:
    build_cli()()
