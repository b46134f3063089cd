"""AuthWatcher: another replica's key and token changes reach this one's caches, and a failing poll
never makes a stale cache trusted for longer than ``stale_after``."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update

from slipstream.auth import keys
from slipstream.auth.admin import AdminAuth
from slipstream.auth.service import KeyService
from slipstream.auth.watcher import AuthWatcher
from slipstream.errors import AuthenticationFailed, AuthUnavailable
from slipstream.store.db import Database
from slipstream.store.tables import api_keys
from tests.unit.databases import backends, fresh_database

SECRET = secrets.token_bytes(32)


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPSTREAM_ADMIN_TOKEN", raising=False)


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        yield database


class Replica:
    """One gateway's auth state: its key cache, its admin digest and the watcher feeding them."""

    def __init__(self, db: Database, admin: AdminAuth, stale_after: float = 5.0) -> None:
        self.keys = KeyService(db, SECRET)
        self.admin = admin
        self.watcher = AuthWatcher(db, self.keys, admin, interval=stale_after / 5, stale_after=stale_after)


async def test_a_key_change_elsewhere_drops_the_cache_on_the_next_poll(db: Database) -> None:
    admin, _ = await AdminAuth.ensure(db, SECRET)
    here, there = Replica(db, admin), KeyService(db, SECRET)
    await here.watcher.poll()
    info, old = await there.create("shared", None, created_by="admin")
    await here.keys.authenticate(old)  # cached here
    _, new = await there.regenerate(info.uuid)
    await here.keys.authenticate(old)  # no poll yet: the cache still answers (no lookup per request)
    await here.watcher.poll()
    assert here.watcher.changes == 1
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await here.keys.authenticate(old)
    assert (await here.keys.authenticate(new)).key_uuid == info.uuid


async def test_every_kind_of_key_change_moves_the_version(db: Database) -> None:
    admin, _ = await AdminAuth.ensure(db, SECRET)
    here, there = Replica(db, admin), KeyService(db, SECRET)
    await here.watcher.poll()
    info, _ = await there.create("k", None, created_by="admin")
    await there.rename(info.uuid, "renamed")
    await here.watcher.poll()
    await there.set_models(info.uuid, ["m"])
    await here.watcher.poll()
    await there.regenerate(info.uuid)
    await here.watcher.poll()
    await there.delete(info.uuid)
    await here.watcher.poll()
    assert here.watcher.changes == 4


async def test_a_rotated_admin_token_is_installed_on_the_next_poll(db: Database) -> None:
    admin, first = await AdminAuth.ensure(db, SECRET)
    assert first is not None
    here = Replica(db, admin)
    await here.watcher.poll()
    _, second = await AdminAuth.rotate(db, SECRET)
    assert admin.verify(first) and not admin.verify(second)
    await here.watcher.poll()
    assert admin.verify(second) and not admin.verify(first)


async def test_cached_hits_make_no_query(db: Database) -> None:
    admin, _ = await AdminAuth.ensure(db, SECRET)
    here = Replica(db, admin)
    await here.watcher.poll()
    _, secret = await here.keys.create("hot", None, created_by="admin")
    await here.keys.authenticate(secret)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(100):
            await here.keys.authenticate(secret)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert statements == []


async def test_without_a_good_poll_the_cache_expires_after_stale_after(db: Database) -> None:
    admin, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None
    here = Replica(db, admin, stale_after=0.3)
    await here.watcher.poll()
    info, secret = await here.keys.create("k", None, created_by="admin")
    await here.keys.authenticate(secret)
    async with db.write() as conn:  # a change this replica cannot hear about (no version bump)
        await conn.execute(update(api_keys).where(api_keys.c.uuid == info.uuid).values(name="changed-behind"))
    assert (await here.keys.authenticate(secret)).name == "k"  # trusted cache
    await asyncio.sleep(0.35)
    assert (await here.keys.authenticate(secret)).name == "changed-behind"  # looked up again
    with pytest.raises(AuthUnavailable) as refused:
        admin.verify(token)
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "server_overloaded", 1)
    await here.watcher.poll()
    assert admin.verify(token)


async def test_a_request_that_finds_the_trust_lapsed_reads_the_database_itself(db: Database) -> None:
    """A late poll (a busy event loop) must not turn a reachable database into 503s for the admin."""
    admin, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None
    here = Replica(db, admin, stale_after=0.2)
    await here.watcher.poll()
    await asyncio.sleep(0.25)  # no poll loop runs: the trust lapses
    assert admin.lapsed
    await here.watcher.refresh()
    assert not admin.lapsed and admin.verify(token)


async def test_a_refresh_against_an_unreachable_database_keeps_refusing(db: Database) -> None:
    admin, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = await Database.open(f"postgresql://nobody@127.0.0.1:{port}/nothing", migrate=False)
    try:
        watcher = AuthWatcher(gone, KeyService(gone, SECRET), admin, interval=0.1, stale_after=0.2)
        admin.trust_until(0.0)
        await watcher.refresh()
        with pytest.raises(AuthUnavailable):
            admin.verify(token)
    finally:
        await gone.aclose()


async def test_the_poll_loop_runs_and_stops(db: Database) -> None:
    admin, _ = await AdminAuth.ensure(db, SECRET)
    here = Replica(db, admin, stale_after=0.25)
    await here.watcher.start()
    try:
        for _ in range(100):  # bounded: at most 100 × 20 ms
            if here.watcher.polls >= 4:
                break
            await asyncio.sleep(0.02)
        assert here.watcher.polls >= 4
    finally:
        await here.watcher.aclose()
    polls = here.watcher.polls
    await asyncio.sleep(0.15)
    assert here.watcher.polls == polls


async def test_an_unreachable_database_is_a_503_not_a_500() -> None:
    with socket.socket() as sock:  # a port nothing listens on once this is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = await Database.open(f"postgresql://nobody@127.0.0.1:{port}/nothing", migrate=False)
    try:
        with pytest.raises(AuthUnavailable) as refused:
            await KeyService(db, SECRET).authenticate(keys.generate_key())
        assert (refused.value.status, refused.value.retry_after) == (503, 1)
    finally:
        await db.aclose()
