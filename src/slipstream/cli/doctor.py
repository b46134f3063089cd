"""``slipstream doctor``: what to run when something is wrong.

Checks the engine build against the CPU, runs one real inference, and checks the data
directory, the database and every configured model; prints a table (or ``--output json``) and
exits 1 if anything is broken.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from slipstream.cli.client import Output, OutputOption
from slipstream.cli.output import console, print_json, print_table
from slipstream.config import ConfigError, Settings, load_settings
from slipstream.diagnostics.report import Check, Report, Status

_COLOURS = {Status.ok: "green", Status.warn: "yellow", Status.fail: "bold red"}


def _settings(config: Path | None, data_dir: Path | None) -> tuple[Settings, Check]:
    """The settings ``slipstream serve`` would use; if they are invalid, defaults (and a failed check)."""
    facts: dict[str, Any] = {"path": str(config) if config else None}
    try:
        settings = load_settings(config, data_dir=data_dir)
    except ConfigError as exc:
        fallback = Settings() if data_dir is None else Settings(data_dir=data_dir)
        return fallback, Check("config", Status.fail, " ".join(str(exc).split()), facts)
    facts["models"] = len(settings.models)
    where = f"loaded {config}" if config else "no --config file"
    builtin = "with" if settings.include_builtin_models else "without"
    detail = f"{where}: {len(settings.models)} model(s) {builtin} the built-in ones"
    return settings, Check("config", Status.ok, detail, facts)


async def _gather(config: Path | None, data_dir: Path | None, skip_inference: bool) -> Report:
    from slipstream.catalog import builtin_models
    from slipstream.cpu import read_cpu
    from slipstream.diagnostics.cpu import check_cpu
    from slipstream.diagnostics.engine import check_engine, check_versions, probe_engine
    from slipstream.diagnostics.models import check_models
    from slipstream.diagnostics.smoke import smoke_inference
    from slipstream.diagnostics.storage import check_data_dir, check_database
    from slipstream.services import build_catalog

    report = Report()
    engine = await asyncio.to_thread(probe_engine)
    cpu = read_cpu()
    report.sections["versions"] = check_versions(engine)
    report.sections["engine"] = check_engine(engine, cpu)
    report.sections["cpu"] = check_cpu(cpu)
    settings, report.sections["config"] = _settings(config, data_dir)
    report.sections["data_dir"] = check_data_dir(settings.data_dir)
    report.sections["database"] = await check_database(settings.resolved_database_url)
    report.models = await check_models(build_catalog(settings).entries())
    if skip_inference:
        report.sections["inference"] = Check("inference", Status.warn, "skipped (--skip-inference)")
    else:
        report.sections["inference"] = await smoke_inference(builtin_models()[0], settings.engine)
    return report


def _render(report: Report) -> None:
    rows = [{"name": c.name, "status": c.status, "detail": c.detail} for c in report.checks()]
    print_table(
        rows,
        [
            ("Check", "name"),
            ("Status", lambda r: Text(str(r["status"]), style=_COLOURS[r["status"]])),
            ("Detail", "detail"),
        ],
        title="slipstream doctor",
        nowrap=("Check", "Status"),
    )
    failed = sum(c.status is Status.fail for c in report.checks())
    warned = sum(c.status is Status.warn for c in report.checks())
    if failed:
        console().print(f"[bold red]{failed} check(s) failed[/], {warned} warning(s).")
    else:
        console().print(f"[green]Nothing is broken[/] ({warned} warning(s)).")


def doctor_command(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Check this data directory (default: $SLIPSTREAM_DATA_DIR).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="The settings/catalog file `slipstream serve` is given.")
    ] = None,
    skip_inference: Annotated[
        bool, typer.Option("--skip-inference", help="Do not start a runner for the smoke inference.")
    ] = False,
    output: OutputOption = Output.table,
) -> None:
    """Check the engine build, CPU, one inference, data directory, database and models; exit 1 if broken."""
    if output is Output.table:
        with Console(stderr=True).status("Checking (the smoke inference takes a few seconds)..."):
            report = asyncio.run(_gather(config, data_dir, skip_inference))
        _render(report)
    else:
        report = asyncio.run(_gather(config, data_dir, skip_inference))
        print_json(report.as_json())
    if report.status is Status.fail:
        raise typer.Exit(1)
