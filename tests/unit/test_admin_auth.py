"""The admin token: generated once, set (never silently replaced) from the environment, bound to the server secret."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from slipstream.auth import keys
from slipstream.auth.admin import AdminAuth
from slipstream.config import ConfigError
from slipstream.store.db import Database
from slipstream.store.tables import server_state
from tests.unit.databases import backends, fresh_database

SECRET = secrets.token_bytes(32)


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPSTREAM_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SLIPSTREAM_ADMIN_TOKEN_OVERWRITE", raising=False)


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        yield database


async def test_first_run_generates_a_token_once(db: Database) -> None:
    auth, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None and keys.is_admin_token(token)
    assert auth.verify(token)
    again, none = await AdminAuth.ensure(db, SECRET)
    assert none is None and again.verify(token)


async def test_only_the_digest_is_stored(db: Database) -> None:
    _, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None
    async with db.read() as conn:
        values = [row.value for row in await conn.execute(select(server_state))]
    assert token not in values and keys.digest(token, SECRET) in values


async def test_verify_rejects_others(db: Database) -> None:
    auth, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None
    assert not auth.verify(keys.generate_admin_token())
    assert not auth.verify(keys.generate_key())
    assert not auth.verify("")
    assert not auth.verify(token[:-1] + ("x" if token[-1] != "x" else "y"))


async def test_env_token_sets_the_first_token(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = keys.generate_admin_token()
    monkeypatch.setenv("SLIPSTREAM_ADMIN_TOKEN", chosen)
    auth, shown = await AdminAuth.ensure(db, SECRET)
    assert shown is None and auth.verify(chosen)
    again, _ = await AdminAuth.ensure(db, SECRET)
    assert again.verify(chosen)


async def test_a_different_env_token_warns_and_the_stored_one_stays(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, generated = await AdminAuth.ensure(db, SECRET)
    assert generated is not None
    stale = keys.generate_admin_token()
    monkeypatch.setenv("SLIPSTREAM_ADMIN_TOKEN", stale)
    auth, shown = await AdminAuth.ensure(db, SECRET)
    assert shown is None
    assert auth.verify(generated) and not auth.verify(stale)
    assert "the stored token stays in force" in caplog.text
    assert stale not in caplog.text and generated not in caplog.text


async def test_overwrite_flag_replaces_the_stored_token(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    _, generated = await AdminAuth.ensure(db, SECRET)
    assert generated is not None
    chosen = keys.generate_admin_token()
    monkeypatch.setenv("SLIPSTREAM_ADMIN_TOKEN", chosen)
    monkeypatch.setenv("SLIPSTREAM_ADMIN_TOKEN_OVERWRITE", "1")
    auth, shown = await AdminAuth.ensure(db, SECRET)
    assert shown is None
    assert auth.verify(chosen) and not auth.verify(generated)


@pytest.mark.parametrize("bad", ["secret", "sk-slip-abc", "slipadm-" + "a" * 46])
async def test_malformed_env_token_is_refused(db: Database, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("SLIPSTREAM_ADMIN_TOKEN", bad)
    with pytest.raises(ConfigError, match="SLIPSTREAM_ADMIN_TOKEN"):
        await AdminAuth.ensure(db, SECRET)


async def test_a_different_server_secret_is_refused_until_accepted(db: Database) -> None:
    await AdminAuth.ensure(db, SECRET)
    other = secrets.token_bytes(32)
    with pytest.raises(ConfigError, match="server secret differs"):
        await AdminAuth.ensure(db, other)
    with pytest.raises(ConfigError):
        await AdminAuth.rotate(db, other)
    auth, token = await AdminAuth.rotate(db, other, accept_new_secret=True)
    assert auth.verify(token)
    again, none = await AdminAuth.ensure(db, other)
    assert none is None and again.verify(token)


async def test_rotate_replaces_the_token(db: Database) -> None:
    _, first = await AdminAuth.ensure(db, SECRET)
    assert first is not None
    _, second = await AdminAuth.rotate(db, SECRET)
    auth, _ = await AdminAuth.ensure(db, SECRET)
    assert auth.verify(second) and not auth.verify(first)
