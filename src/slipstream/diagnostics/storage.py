"""The data directory and the database: writable, and at which migration revision.

Nothing is created here: a missing data directory or SQLite file is reported as "not created
yet" (``slipstream serve`` creates both), and the write probe is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from slipstream.diagnostics.report import Check, Status
from slipstream.store.db import Database, alembic_config, normalize_url

DB_TIMEOUT_S = 20.0
_PROBE_TABLE = "slipstream_doctor_probe"


class _RollBack(Exception):
    """Raised inside the probe transaction so that its write is undone."""


def _can_write(directory: Path) -> str | None:
    """None if a file can be created (and is removed) in ``directory``, else why not."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_data_dir(path: Path) -> Check:
    facts: dict[str, Any] = {"path": str(path), "exists": path.is_dir()}
    if path.exists() and not path.is_dir():
        return Check("data_dir", Status.fail, f"{path} is not a directory", facts)
    if path.is_dir():
        why = _can_write(path)
        facts["writable"] = why is None
        if why:
            return Check("data_dir", Status.fail, f"{path} is not writable: {why}", facts)
        return Check("data_dir", Status.ok, f"{path}: writable", facts)
    ancestor = next(p for p in path.parents if p.exists())
    why = f"{ancestor} is not a directory" if not ancestor.is_dir() else _can_write(ancestor)
    facts["writable"] = why is None
    if why:
        return Check("data_dir", Status.fail, f"{path} cannot be created: {why}", facts)
    return Check("data_dir", Status.ok, f"{path}: not created yet; `slipstream serve` creates it", facts)


def _revisions() -> tuple[str | None, set[str]]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head(), {rev.revision for rev in script.walk_revisions()}


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def _inspect(url: str) -> tuple[str | None, str | None]:
    """(current revision, None) or (revision, why a write transaction fails)."""
    db = await Database.open(url, migrate=False)
    try:
        async with db.read() as conn:
            revision = await conn.run_sync(_current_revision)
        try:
            with contextlib.suppress(_RollBack):
                async with db.write() as conn:
                    await conn.execute(text(f"CREATE TABLE {_PROBE_TABLE} (x INTEGER)"))
                    raise _RollBack
        except SQLAlchemyError as exc:
            return revision, str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return revision, None
    finally:
        await db.aclose()


def _missing_sqlite_file(backend: str, database: str | None) -> bool:
    return backend == "sqlite" and bool(database) and database != ":memory:" and not Path(str(database)).exists()


async def check_database(database_url: str) -> Check:
    url = normalize_url(database_url)
    parsed = make_url(url)
    head, known = _revisions()
    facts: dict[str, Any] = {"url": parsed.render_as_string(hide_password=True), "head": head, "revision": None}
    where = parsed.database if parsed.get_backend_name() == "sqlite" else facts["url"]
    if _missing_sqlite_file(parsed.get_backend_name(), parsed.database):
        facts["exists"] = False
        return Check("database", Status.ok, f"{where}: not created yet; `slipstream serve` creates it", facts)
    facts["exists"] = True
    try:
        async with asyncio.timeout(DB_TIMEOUT_S):
            revision, cannot_write = await _inspect(url)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return Check("database", Status.fail, f"{where}: cannot open: {str(exc) or 'timed out'}", facts)
    facts.update(revision=revision, writable=cannot_write is None)
    if cannot_write:
        return Check("database", Status.fail, f"{where}: a write transaction fails: {cannot_write}", facts)
    if revision == head:
        return Check("database", Status.ok, f"{where}: writable, at revision {revision} (head)", facts)
    if revision is None:
        return Check("database", Status.warn, f"{where}: not migrated yet; `slipstream serve` migrates it", facts)
    if revision in known:
        detail = f"{where}: at revision {revision}, head is {head}; `slipstream serve` upgrades it"
        return Check("database", Status.warn, detail, facts)
    detail = f"{where}: at revision {revision}, unknown to this Slipstream (a newer release migrated it)"
    return Check("database", Status.fail, detail, facts)
