"""``slipstream keys``: model access keys, over the control API. Secrets are printed once, on create
and regenerate, and never listed."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from slipstream.cli.client import DEFAULT_API_URL, ApiUrlOption, ControlClient, Output, OutputOption, TokenOption
from slipstream.cli.output import console, errors_as_exit, print_json, print_table, when

app = typer.Typer(help="Create and manage model access keys.", no_args_is_help=True)
BASE = "/v2/gen-ai/models/api_keys"
_PAGE = 100


def _models(info: dict[str, Any]) -> str:
    models = info.get("models")
    return "all" if models is None else ", ".join(models)


def _masked(info: dict[str, Any]) -> str:
    return f"{info.get('prefix', '')}…{info.get('last4', '')}"


_COLUMNS: list[tuple[str, Any]] = [
    ("Name", "name"),
    ("UUID", "uuid"),
    ("Key", _masked),
    ("Models", _models),
    ("Created", lambda i: when(i.get("created_at"))),
    ("Last used", lambda i: when(i.get("last_used_at"))),
]


def _split_models(models: str | None) -> list[str] | None:
    if models is None:
        return None
    names = [m.strip() for m in models.split(",") if m.strip()]
    return names or None


def _show_secret(info: dict[str, Any], heading: str) -> None:
    """The secret goes out first, as plain text and flushed, so that nothing in the rendering
    after it (a terminal, a name Rich chokes on) can lose a secret the server will not show again."""
    from rich.panel import Panel

    sys.stdout.write(f"{heading}: {info['secret_key']}\n")
    sys.stdout.flush()
    body = Text.assemble((str(info["secret_key"]), "bold"), "\n\nStore it now: this secret will not be shown again.")
    console().print(Panel(body, title=Text(heading), expand=False))
    print_table([info], _COLUMNS)


def _show(body: dict[str, Any], output: Output, heading: str | None = None) -> None:
    if output is Output.json:
        print_json(body)
    elif heading is not None:
        _show_secret(body["api_key_info"], heading)
    else:
        print_table([body["api_key_info"]], _COLUMNS)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to recognise the key by.")],
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated model ids the key may use (default: all).")
    ] = None,
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Create a key and print its secret (once)."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("POST", BASE, {"name": name, "models": _split_models(models)})
    _show(body, output, heading=f"New model access key '{name}'")


@app.command("list")
def list_keys(
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List keys (never their secrets)."""
    client = ControlClient(api_url, token)
    infos: list[dict[str, Any]] = []
    page, pages = 1, 1
    with errors_as_exit():
        while page <= pages:
            body = client.call("GET", BASE, query={"page": page, "per_page": _PAGE})
            infos += body["api_key_infos"]
            pages = int(body["meta"]["pages"])
            page += 1
    if output is Output.json:
        print_json({"api_key_infos": infos, "meta": {"total": len(infos)}})
    else:
        print_table(infos, _COLUMNS, empty="No model access keys yet; create one with 'slipstream keys create NAME'.")


@app.command("get")
def get(
    uuid: Annotated[str, typer.Argument(help="The key's uuid.")],
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show one key."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("GET", f"{BASE}/{uuid}")
    _show(body, output)


@app.command("rename")
def rename(
    uuid: Annotated[str, typer.Argument(help="The key's uuid.")],
    name: Annotated[str, typer.Argument(help="The new name.")],
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Rename a key."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("PUT", f"{BASE}/{uuid}", {"api_key_uuid": uuid, "name": name})
    _show(body, output)


@app.command("set-models")
def set_models(
    uuid: Annotated[str, typer.Argument(help="The key's uuid.")],
    models: Annotated[str, typer.Argument(help="Comma-separated model ids, or 'all'.")],
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Limit a key to some models (or 'all')."""
    scope = None if models.strip() == "all" else _split_models(models)
    with errors_as_exit():
        body = ControlClient(api_url, token).call("PUT", f"{BASE}/{uuid}", {"models": scope})
    _show(body, output)


@app.command("regenerate")
def regenerate(
    uuid: Annotated[str, typer.Argument(help="The key's uuid.")],
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Issue a new secret; the old one stops working at once."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("PUT", f"{BASE}/{uuid}/regenerate")
    _show(body, output, heading="Regenerated model access key")


@app.command("delete")
def delete(
    uuid: Annotated[str, typer.Argument(help="The key's uuid.")],
    api_url: ApiUrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Delete a key; it stops working at once."""
    with errors_as_exit():
        body = ControlClient(api_url, token).call("DELETE", f"{BASE}/{uuid}")
    if output is Output.json:
        print_json(body)
    else:
        info = body["api_key_info"]
        console().print(Text(f"Deleted model access key '{info['name']}' ({info['uuid']})."))
