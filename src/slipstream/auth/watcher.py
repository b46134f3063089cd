"""Carries key and admin-token changes made elsewhere (another replica, ``slipstream admin``) to this
process within ``interval`` seconds.

One background task reads two ``server_state`` rows, the auth version and the admin token digest,
with one small SELECT every ``interval``: when the version moved it drops the key cache, and it
always installs the digest it read. Each successful read extends the time for which the key cache
and the admin digest may be trusted to ``stale_after`` seconds after that read began; if the
database cannot be read for longer, keys are checked in the database on every request and the
admin token is refused with 503 (see ``KeyService.trust_cache_until`` and ``AdminAuth.trust_until``),
so a failing poll never stretches how long a revoked secret keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from slipstream.auth.admin import TOKEN_DIGEST, AdminAuth
from slipstream.auth.service import KeyService
from slipstream.store.db import Database
from slipstream.store.state import AUTH_VERSION
from slipstream.store.tables import server_state

log = logging.getLogger(__name__)

_WATCHED = select(server_state.c.key, server_state.c.value).where(server_state.c.key.in_([AUTH_VERSION, TOKEN_DIGEST]))


class AuthWatcher:
    """``start()`` once (it reads the state before returning), ``aclose()`` at shutdown."""

    def __init__(
        self,
        db: Database,
        keys: KeyService,
        admin: AdminAuth,
        *,
        interval: float = 0.25,
        stale_after: float = 1.0,
    ) -> None:
        if not 0 < interval < stale_after:
            raise ValueError("the poll interval must be positive and shorter than stale_after")
        self._db = db
        self._keys = keys
        self._admin = admin
        self._interval = interval
        self._stale_after = stale_after
        self._version: str | None = None
        self._failing_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.changes = 0

    async def start(self) -> None:
        if self._task is None:
            await self.poll()
            self._task = asyncio.create_task(self._run(), name="auth-watcher")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def poll(self) -> None:
        """Read the version and the digest once; apply them, then extend the trust window."""
        began = time.monotonic()
        async with asyncio.timeout(self._stale_after), self._db.read() as conn:
            rows = {key: value for key, value in await conn.execute(_WATCHED)}
        version = rows.get(AUTH_VERSION)
        if version != self._version:
            if self.polls:  # the first read only sets the baseline; the cache starts empty
                self._keys.drop_cache()
                self.changes += 1
            self._version = version
        digest = rows.get(TOKEN_DIGEST)
        if digest is not None:
            self._admin.replace_digest(digest)
        self.polls += 1
        deadline = began + self._stale_after
        self._keys.trust_cache_until(deadline)
        self._admin.trust_until(deadline)

    async def refresh(self) -> None:
        """One read now, for a request that found the trust lapsed: on a busy machine the poll loop
        can fall behind ``stale_after`` while the database is fine (seen as 503s for the admin token
        under load). A failed read leaves the trust lapsed."""
        try:
            await self.poll()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.debug("auth refresh failed: %s", type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning(
                        "cannot read the auth version (%s); from %.1f s after the last good read, model access "
                        "keys are checked in the database on every request and the admin token is refused",
                        type(exc).__name__,
                        self._stale_after,
                    )
                continue
            if self._failing_since is not None:
                log.warning("auth version readable again after %.1f s", time.monotonic() - self._failing_since)
                self._failing_since = None
