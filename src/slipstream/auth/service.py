"""Model access keys: create, list, rename, scope, regenerate, delete, and authenticate (the hot path).

``authenticate`` rejects malformed keys without touching the database, then looks the HMAC digest
up in a small in-process cache and only on a miss in the database. Every change to a key drops its
cache entries at once, so in this process an old secret fails on the very next request; it also
bumps the auth version in the same transaction, and the ``AuthWatcher`` of every other replica,
polling that version, drops the whole cache within its poll interval. The cache is trusted only
while the watcher keeps confirming (``trust_cache_until``): when the version cannot be read, keys
are looked up in the database on every request instead, and a database that cannot answer that
lookup is a 503, never a stale yes.
``last_used_at`` is kept in memory and written in batches by a background flush.
"""

from __future__ import annotations

import asyncio
import builtins
import hmac
import logging
import math
import time
import uuid as uuid_mod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from slipstream.auth import keys
from slipstream.auth.principal import Principal
from slipstream.errors import AuthenticationFailed, AuthUnavailable, InvalidRequest, NotFound
from slipstream.store.db import Database
from slipstream.store.state import bump_auth_version
from slipstream.store.tables import UtcDateTime, api_keys

log = logging.getLogger(__name__)

MAX_NAME = 128
MAX_PER_PAGE = 200
_UNSET: Any = object()
_LIVE = api_keys.c.deleted_at.is_(None)
_BY_DIGEST = select(api_keys.c.uuid, api_keys.c.name, api_keys.c.models, api_keys.c.secret_digest).where(
    api_keys.c.secret_digest == bindparam("digest"), _LIVE
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as the control API shows it; never holds the secret or its digest."""

    uuid: str
    name: str
    models: tuple[str, ...] | None
    prefix: str
    last4: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    deleted_at: datetime | None
    last_used_at: datetime | None

    def to_api(self, secret: str | None = None) -> dict[str, Any]:
        """DigitalOcean's ``api_key_info`` shape plus Slipstream's fields; ``secret_key`` only if given."""
        info: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "deleted_at": _iso(self.deleted_at),
            "models": None if self.models is None else list(self.models),
            "prefix": self.prefix,
            "last4": self.last4,
            "last_used_at": _iso(self.last_used_at),
        }
        if secret is not None:
            info["secret_key"] = secret
        return info


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidRequest(f"name must be 1 to {MAX_NAME} characters", param="name")
    return name


def _check_models(models: builtins.list[str] | None) -> builtins.list[str] | None:
    if models is None:
        return None
    if not models:
        raise InvalidRequest("models must list at least one model id, or be null for all models", param="models")
    return list(dict.fromkeys(models))


class KeyService:
    def __init__(
        self,
        db: Database,
        server_secret: bytes,
        *,
        cache_ttl: float = 10.0,
        cache_size: int = 10_000,
        flush_interval: float = 5.0,
        lookup_timeout: float = 5.0,
    ) -> None:
        self._db = db
        self._secret = server_secret
        self._ttl = cache_ttl
        self._lookup_timeout = lookup_timeout
        self._trusted_until = math.inf  # until a watcher says otherwise, the TTL alone bounds the cache
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self._used: dict[str, float] = {}
        self._flush_interval = flush_interval
        self._flusher: asyncio.Task[None] | None = None

    # -- the hot path ---------------------------------------------------------------------------

    async def authenticate(self, secret: str) -> Principal:
        """The principal for a model access key, or ``AuthenticationFailed``."""
        if not secret:
            raise AuthenticationFailed("Missing model access key: send 'Authorization: Bearer <key>'")
        if not keys.looks_valid(secret):
            if keys.is_admin_token(secret):
                raise AuthenticationFailed(
                    "This is an admin token; admin tokens are for the control API (/v2/gen-ai). "
                    "Use a model access key (sk-slip-...) for inference."
                )
            raise AuthenticationFailed("Invalid model access key: wrong format or checksum (check for typos)")
        digest = keys.digest(secret, self._secret)
        cached = self._cache.get(digest)
        if cached is not None:
            now = time.monotonic()
            if cached[1] > now and now < self._trusted_until:
                return cached[0]
        generation = self._generation
        try:
            async with asyncio.timeout(self._lookup_timeout), self._db.read() as conn:
                row = (await conn.execute(_BY_DIGEST, {"digest": digest})).first()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise AuthUnavailable(
                "The key store cannot be reached, so the model access key cannot be checked; retry shortly.",
                retry_after=1,
            ) from exc
        if row is None or not hmac.compare_digest(row.secret_digest, digest):
            raise AuthenticationFailed("Invalid model access key: unknown or revoked")
        principal = Principal(row.uuid, row.name, None if row.models is None else frozenset(row.models))
        if generation == self._generation:  # no change to any key raced with this lookup
            self._remember(digest, principal)
        return principal

    def _remember(self, digest: str, principal: Principal) -> None:
        if len(self._cache) >= self._cache_size:
            now = time.monotonic()
            for stale in [d for d, (_, exp) in self._cache.items() if exp <= now]:
                del self._cache[stale]
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[digest] = (principal, time.monotonic() + self._ttl)

    def drop_cache(self) -> None:
        """Forget every cached key (another replica changed one); lookups in flight will not cache."""
        self._generation += 1
        self._cache.clear()

    def trust_cache_until(self, deadline: float) -> None:
        """Serve from the cache until ``deadline`` (``time.monotonic()``), then only from the database."""
        self._trusted_until = deadline

    def _forget(self, key_uuid: str) -> None:
        self._generation += 1
        for digest in [d for d, (p, _) in self._cache.items() if p.key_uuid == key_uuid]:
            del self._cache[digest]

    def mark_used(self, key_uuid: str) -> None:
        """Note a use of the key; written to ``last_used_at`` by the background flush."""
        self._used[key_uuid] = time.time()

    # -- lifecycle of the last_used_at flusher ----------------------------------------------------

    async def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="key-last-used")

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        try:
            await self.flush_last_used()
        except Exception:
            log.exception("could not write last_used_at at shutdown")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush_last_used()
            except Exception:
                log.exception("could not write last_used_at; will retry")

    async def flush_last_used(self) -> None:
        """Write the uses noted since the last flush (only ever moving ``last_used_at`` forward)."""
        if not self._used:
            return
        used, self._used = self._used, {}
        params = [{"k": k, "ts": datetime.fromtimestamp(t, UTC)} for k, t in used.items()]
        ts = bindparam("ts", type_=UtcDateTime())
        stmt = (
            update(api_keys)
            .where(
                and_(
                    api_keys.c.uuid == bindparam("k"),
                    or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < ts),
                )
            )
            .values(last_used_at=ts)
        )
        try:
            async with self._db.write() as conn:
                await conn.execute(stmt, params)
        except BaseException:
            for k, t in used.items():  # keep them for the next try, unless a newer use arrived
                self._used[k] = max(t, self._used.get(k, 0.0))
            raise

    # -- control plane ----------------------------------------------------------------------------

    async def create(self, name: str, models: builtins.list[str] | None, created_by: str) -> tuple[KeyInfo, str]:
        """A new key and its plaintext secret, which is not stored and cannot be shown again."""
        name, models = _check_name(name), _check_models(models)
        secret = keys.generate_key()
        now = datetime.now(UTC)
        values = {
            "uuid": str(uuid_mod.uuid4()),
            "name": name,
            "secret_digest": keys.digest(secret, self._secret),
            "prefix": keys.display_prefix(secret),
            "last4": keys.last4(secret),
            "models": models,
            "created_at": now,
            "created_by": created_by,
            "updated_at": now,
            "deleted_at": None,
            "last_used_at": None,
        }
        async with self._db.write() as conn:
            await conn.execute(api_keys.insert().values(**values))
        return self._info(values), secret

    async def list(self, page: int = 1, per_page: int = 20) -> tuple[builtins.list[KeyInfo], int]:
        """One page of live keys, newest first, and the number of live keys."""
        if page < 1:
            raise InvalidRequest("page must be 1 or more", param="page")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise InvalidRequest(f"per_page must be between 1 and {MAX_PER_PAGE}", param="per_page")
        query = (
            select(api_keys)
            .where(_LIVE)
            .order_by(api_keys.c.created_at.desc(), api_keys.c.uuid.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        async with self._db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(api_keys).where(_LIVE))).scalar_one()
            rows = (await conn.execute(query)).mappings().all()
        return [self._info(row) for row in rows], int(total)

    async def get(self, uuid: str) -> KeyInfo:
        async with self._db.read() as conn:
            result = await conn.execute(select(api_keys).where(api_keys.c.uuid == uuid, _LIVE))
            row = result.mappings().first()
        if row is None:
            raise _not_found(uuid)
        return self._info(row)

    async def rename(self, uuid: str, name: str) -> KeyInfo:
        return await self.update(uuid, name=name)

    async def set_models(self, uuid: str, models: builtins.list[str] | None) -> KeyInfo:
        return await self.update(uuid, models=models)

    async def update(self, uuid: str, *, name: str = _UNSET, models: builtins.list[str] | None = _UNSET) -> KeyInfo:
        """Rename and/or re-scope in one statement; leaving both out returns the key unchanged."""
        values: dict[str, Any] = {}
        if name is not _UNSET:
            values["name"] = _check_name(name)
        if models is not _UNSET:
            values["models"] = _check_models(models)
        if not values:
            return await self.get(uuid)
        info = await self._update(uuid, values)
        self._forget(uuid)
        return info

    async def regenerate(self, uuid: str) -> tuple[KeyInfo, str]:
        """A new secret for the same key; the old secret stops working at once here, within the watcher's
        poll interval on other replicas."""
        secret = keys.generate_key()
        values = {
            "secret_digest": keys.digest(secret, self._secret),
            "prefix": keys.display_prefix(secret),
            "last4": keys.last4(secret),
        }
        try:
            info = await self._update(uuid, values)
        finally:
            self._forget(uuid)
        return info, secret

    async def delete(self, uuid: str) -> KeyInfo:
        """Soft delete: the row stays for the ledger's sake, the key never authenticates again."""
        try:
            return await self._update(uuid, {"deleted_at": datetime.now(UTC)})
        finally:
            self._forget(uuid)

    async def _update(self, uuid: str, values: dict[str, Any]) -> KeyInfo:
        stmt = (
            update(api_keys)
            .where(api_keys.c.uuid == uuid, _LIVE)
            .values(updated_at=datetime.now(UTC), **values)
            .returning(*api_keys.c)
        )
        async with self._db.write() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            if row is not None:
                await bump_auth_version(conn)
        if row is None:
            raise _not_found(uuid)
        return self._info(row)

    def _info(self, row: Any) -> KeyInfo:
        last_used = row["last_used_at"]
        pending = self._used.get(row["uuid"])
        if pending is not None:
            noted = datetime.fromtimestamp(pending, UTC)
            last_used = noted if last_used is None or noted > last_used else last_used
        return KeyInfo(
            uuid=row["uuid"],
            name=row["name"],
            models=None if row["models"] is None else tuple(row["models"]),
            prefix=row["prefix"],
            last4=row["last4"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            updated_at=row["updated_at"],
            deleted_at=row["deleted_at"],
            last_used_at=last_used,
        )


def _not_found(uuid: str) -> NotFound:
    return NotFound(f"No model access key with uuid '{uuid}'", param="uuid")
