"""The admin token for the control API: generated on first run, stored only as an HMAC digest.

``ensure`` also records a check value derived from the server secret, so that starting with a
different secret (every stored digest silently useless) is refused with an explanation instead.

The database holds the token in force. ``$SLIPSTREAM_ADMIN_TOKEN`` sets it on a fresh database,
but never silently replaces a different stored one: a replica restarted with a stale value would
otherwise bring a rotated-out token back. It only warns, unless
``$SLIPSTREAM_ADMIN_TOKEN_OVERWRITE=1`` asks for the replacement. A rotation reaches running
servers through the ``AuthWatcher``, which calls ``replace_digest`` and ``trust_until``.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import time

from sqlalchemy.ext.asyncio import AsyncConnection

from slipstream.auth import keys
from slipstream.config import ConfigError
from slipstream.errors import AuthUnavailable
from slipstream.store.db import Database
from slipstream.store.state import bump_auth_version, get_state, put_state

log = logging.getLogger(__name__)

ENV_VAR = "SLIPSTREAM_ADMIN_TOKEN"
OVERWRITE_ENV_VAR = "SLIPSTREAM_ADMIN_TOKEN_OVERWRITE"
TOKEN_DIGEST = "admin_token_digest"
SECRET_CHECK = "server_secret_check"
_CHECK_LABEL = b"slipstream server secret check v1"


def _secret_check(server_secret: bytes) -> str:
    return hmac.digest(server_secret, _CHECK_LABEL, "sha256").hex()


class AdminAuth:
    """Verifies admin tokens in constant time against the one stored digest."""

    def __init__(self, token_digest: str, server_secret: bytes) -> None:
        self._digest = token_digest
        self._secret = server_secret
        self._trusted_until = math.inf  # until a watcher says otherwise

    def replace_digest(self, token_digest: str) -> None:
        """The digest now stored (another process rotated the token)."""
        self._digest = token_digest

    def trust_until(self, deadline: float) -> None:
        """Verify against the digest held until ``deadline`` (``time.monotonic()``), then refuse with 503."""
        self._trusted_until = deadline

    @classmethod
    async def ensure(cls, db: Database, server_secret: bytes) -> tuple[AdminAuth, str | None]:
        """The admin auth, and the plaintext token if one was generated now (show it once)."""
        from_env = _token_from_env()
        async with db.write() as conn:
            await _check_secret(conn, server_secret)
            existing = await get_state(conn, TOKEN_DIGEST)
            if from_env is not None:
                in_force = await _install_env_token(conn, keys.digest(from_env, server_secret), existing)
                return cls(in_force, server_secret), None
            if existing is not None:
                return cls(existing, server_secret), None
            token = keys.generate_admin_token()
            digest = keys.digest(token, server_secret)
            stored = await put_state(conn, TOKEN_DIGEST, digest, replace=False)
        # another replica may have won the race; its token is the one that counts
        return cls(stored, server_secret), token if stored == digest else None

    @classmethod
    async def rotate(
        cls, db: Database, server_secret: bytes, *, accept_new_secret: bool = False
    ) -> tuple[AdminAuth, str]:
        """Replace the admin token; running servers switch to it within their watcher's poll interval.

        With ``accept_new_secret`` the database is re-bound to ``server_secret``; model access keys
        made under the old secret then stop working.
        """
        token = keys.generate_admin_token()
        digest = keys.digest(token, server_secret)
        async with db.write() as conn:
            if accept_new_secret:
                await put_state(conn, SECRET_CHECK, _secret_check(server_secret))
            else:
                await _check_secret(conn, server_secret)
            await put_state(conn, TOKEN_DIGEST, digest)
            await bump_auth_version(conn)
        return cls(digest, server_secret), token

    @property
    def lapsed(self) -> bool:
        """Whether the digest has gone unconfirmed for longer than the watcher allows."""
        return time.monotonic() >= self._trusted_until

    def verify(self, token: str) -> bool:
        if not keys.is_admin_token(token):
            return False
        if self.lapsed:
            raise AuthUnavailable(
                "The database cannot be reached, so the admin token cannot be checked; retry shortly.",
                retry_after=1,
            )
        return hmac.compare_digest(keys.digest(token, self._secret), self._digest)


async def _install_env_token(conn: AsyncConnection, digest: str, existing: str | None) -> str:
    """Store the digest of ``$SLIPSTREAM_ADMIN_TOKEN`` unless a different one is stored and no overwrite
    was asked for (then warn); returns the digest in force."""
    if existing is None or hmac.compare_digest(existing, digest):
        return await put_state(conn, TOKEN_DIGEST, digest, replace=False)
    if not _overwrite_requested():
        log.warning(
            "$%s differs from the admin token stored in the database (rotated since it was set?); the "
            "stored token stays in force. Update or unset $%s, or set %s=1 to replace the stored token with it.",
            ENV_VAR,
            ENV_VAR,
            OVERWRITE_ENV_VAR,
        )
        return existing
    await put_state(conn, TOKEN_DIGEST, digest)
    await bump_auth_version(conn)
    log.warning(
        "the admin token stored in the database was replaced by $%s (%s=1); unset %s now, or a later "
        "restart with a stale value would replace a rotated token again",
        ENV_VAR,
        OVERWRITE_ENV_VAR,
        OVERWRITE_ENV_VAR,
    )
    return digest


def _overwrite_requested() -> bool:
    return os.environ.get(OVERWRITE_ENV_VAR, "").strip().lower() in {"1", "true", "yes"}


def _token_from_env() -> str | None:
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    value = value.strip()
    if not keys.is_admin_token(value):
        raise ConfigError(
            f"${ENV_VAR} is not a well-formed admin token (expected '{keys.ADMIN_PREFIX}' followed by "
            "46 letters and digits with a valid checksum); create one with 'slipstream admin new-token', "
            "or unset it"
        )
    return value


async def _check_secret(conn: AsyncConnection, server_secret: bytes) -> None:
    check = _secret_check(server_secret)
    stored = await put_state(conn, SECRET_CHECK, check, replace=False)
    if not hmac.compare_digest(stored, check):
        raise ConfigError(
            "the server secret differs from the one this database was set up with, so no stored key "
            "would match. Restore the original data-dir/server.secret (or $SLIPSTREAM_SECRET), or run "
            "'slipstream admin rotate-token --accept-new-secret' to start over with new keys."
        )
