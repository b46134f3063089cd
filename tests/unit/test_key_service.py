"""KeyService on a real SQLite file: lifecycle, scope, and immediate revocation despite the cache."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from slipstream.auth import keys
from slipstream.auth.service import KeyService
from slipstream.errors import AuthenticationFailed, InvalidRequest, NotFound
from slipstream.store.db import Database
from tests.unit.databases import backends, fresh_database

SERVER_SECRET = secrets.token_bytes(32)


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
async def svc(db: Database) -> AsyncIterator[KeyService]:
    service = KeyService(db, SERVER_SECRET)
    await service.start()
    yield service
    await service.aclose()


async def test_create_then_authenticate(svc: KeyService) -> None:
    info, secret = await svc.create("my-app", None, created_by="admin")
    assert keys.looks_valid(secret)
    assert (info.prefix, info.last4) == (secret[:12], secret[-4:])
    principal = await svc.authenticate(secret)
    assert (principal.key_uuid, principal.name, principal.models) == (info.uuid, "my-app", None)
    assert principal.may_use("anything")


async def test_secret_is_not_stored(svc: KeyService, db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("reads the SQLite file")
    _, secret = await svc.create("a", None, created_by="admin")
    raw = _database_bytes(Path(str(db.engine.url.database)))
    assert secret.encode() not in raw
    assert secret[12:-4].encode() not in raw


def _database_bytes(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_api_shape(svc: KeyService) -> None:
    info, secret = await svc.create("shape", ["m1", "m2", "m1"], created_by="admin")
    api = info.to_api()
    assert set(api) == {
        "uuid", "name", "created_at", "created_by", "deleted_at", "models", "prefix", "last4", "last_used_at",
    }  # fmt: skip
    assert api["created_at"].endswith("Z") and "+00:00" not in api["created_at"]
    assert api["deleted_at"] is None and api["last_used_at"] is None
    assert api["models"] == ["m1", "m2"]
    assert info.to_api(secret)["secret_key"] == secret


async def test_scoped_key(svc: KeyService) -> None:
    _, secret = await svc.create("scoped", ["a"], created_by="admin")
    principal = await svc.authenticate(secret)
    assert principal.may_use("a") and not principal.may_use("b")


@pytest.mark.parametrize(
    ("name", "models"), [("", None), ("  ", None), ("x" * 129, None), ("ok", [])]
)  # fmt: skip
async def test_invalid_create(svc: KeyService, name: str, models: list[str] | None) -> None:
    with pytest.raises(InvalidRequest):
        await svc.create(name, models, created_by="admin")


async def test_list_newest_first_paginated_without_deleted(svc: KeyService) -> None:
    made = [(await svc.create(f"k{i}", None, created_by="admin"))[0] for i in range(5)]
    await svc.delete(made[1].uuid)
    page1, total = await svc.list(1, 2)
    page2, _ = await svc.list(2, 2)
    page3, _ = await svc.list(3, 2)
    assert total == 4
    assert [i.name for i in page1 + page2 + page3] == ["k4", "k3", "k2", "k0"]
    with pytest.raises(InvalidRequest):
        await svc.list(0, 20)
    with pytest.raises(InvalidRequest):
        await svc.list(1, 1000)


async def test_get_unknown_and_deleted(svc: KeyService) -> None:
    with pytest.raises(NotFound):
        await svc.get("no-such-uuid")
    info, _ = await svc.create("gone", None, created_by="admin")
    deleted = await svc.delete(info.uuid)
    assert deleted.deleted_at is not None
    with pytest.raises(NotFound):
        await svc.get(info.uuid)
    with pytest.raises(NotFound):
        await svc.delete(info.uuid)


async def test_rename_and_set_models_take_effect_at_once(svc: KeyService) -> None:
    info, secret = await svc.create("before", None, created_by="admin")
    await svc.authenticate(secret)  # now cached
    renamed = await svc.rename(info.uuid, "after")
    assert renamed.name == "after" and renamed.updated_at >= info.updated_at
    assert (await svc.authenticate(secret)).name == "after"
    await svc.set_models(info.uuid, ["only-this"])
    assert (await svc.authenticate(secret)).models == frozenset({"only-this"})
    await svc.set_models(info.uuid, None)
    assert (await svc.authenticate(secret)).models is None


async def test_regenerate_kills_the_cached_old_secret(svc: KeyService) -> None:
    info, old = await svc.create("rot", None, created_by="admin")
    await svc.authenticate(old)
    new_info, new = await svc.regenerate(info.uuid)
    assert new != old and new_info.uuid == info.uuid and new_info.last4 == new[-4:]
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await svc.authenticate(old)
    assert (await svc.authenticate(new)).key_uuid == info.uuid


async def test_delete_kills_the_cached_secret(svc: KeyService) -> None:
    info, secret = await svc.create("del", None, created_by="admin")
    await svc.authenticate(secret)
    await svc.delete(info.uuid)
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(secret)


async def test_other_replica_sees_revocation_within_ttl(db: Database) -> None:
    a = KeyService(db, SERVER_SECRET, cache_ttl=0.05)
    b = KeyService(db, SERVER_SECRET)
    info, secret = await b.create("shared", None, created_by="admin")
    await a.authenticate(secret)
    await b.delete(info.uuid)
    await asyncio.sleep(0.1)
    with pytest.raises(AuthenticationFailed):
        await a.authenticate(secret)


class ExplodingDatabase:
    """Any database use fails the test: these rejections must happen before a lookup."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"database touched: {name}")


@pytest.mark.parametrize("which", ["empty", "typo", "garbage", "foreign"])
async def test_malformed_keys_are_rejected_without_a_lookup(which: str) -> None:
    svc = KeyService(ExplodingDatabase(), SERVER_SECRET)  # type: ignore[arg-type]
    key = keys.generate_key()
    candidate = {
        "empty": "",
        "typo": key[:20] + ("A" if key[20] != "A" else "B") + key[21:],
        "garbage": "not-a-key",
        "foreign": "sk-proj-" + key[8:],
    }[which]
    with pytest.raises(AuthenticationFailed) as info:
        await svc.authenticate(candidate)
    assert info.value.code == "invalid_api_key"


async def test_admin_token_is_named_as_such() -> None:
    svc = KeyService(ExplodingDatabase(), SERVER_SECRET)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed, match="admin token"):
        await svc.authenticate(keys.generate_admin_token())


async def test_unknown_well_formed_key(svc: KeyService) -> None:
    with pytest.raises(AuthenticationFailed, match="unknown"):
        await svc.authenticate(keys.generate_key())


async def test_last_used_is_batched(svc: KeyService) -> None:
    info, secret = await svc.create("used", None, created_by="admin")
    principal = await svc.authenticate(secret)
    svc.mark_used(principal.key_uuid)
    shown = await svc.get(info.uuid)
    assert shown.last_used_at is not None  # pending uses are shown before they are written
    await svc.flush_last_used()
    fresh = KeyService(svc._db, SERVER_SECRET)
    stored = await fresh.get(info.uuid)
    assert stored.last_used_at == shown.last_used_at


async def test_cache_hit_is_fast(svc: KeyService) -> None:
    _, secret = await svc.create("fast", None, created_by="admin")
    await svc.authenticate(secret)
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        await svc.authenticate(secret)
    per_call_us = (time.perf_counter() - started) / n * 1e6
    assert per_call_us < 50, f"{per_call_us:.1f} µs per cached authentication"
