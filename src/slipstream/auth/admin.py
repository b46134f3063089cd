"""The admin token for the control API: generated on first run, stored only as an HMAC digest.

``ensure`` also records a check value derived from the server secret, so that starting with a
different secret (every stored digest silently useless) is refused with an explanation instead.
"""

from __future__ import annotations

import hmac
import os

from sqlalchemy.ext.asyncio import AsyncConnection

from slipstream.auth import keys
from slipstream.config import ConfigError
from slipstream.store.db import Database
from slipstream.store.state import get_state, put_state

ENV_VAR = "SLIPSTREAM_ADMIN_TOKEN"
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

    @classmethod
    async def ensure(cls, db: Database, server_secret: bytes) -> tuple[AdminAuth, str | None]:
        """The admin auth, and the plaintext token if one was generated now (show it once)."""
        from_env = _token_from_env()
        async with db.write() as conn:
            await _check_secret(conn, server_secret)
            if from_env is not None:
                digest = keys.digest(from_env, server_secret)
                await put_state(conn, TOKEN_DIGEST, digest)
                return cls(digest, server_secret), None
            existing = await get_state(conn, TOKEN_DIGEST)
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
        """Replace the admin token (running servers pick it up on restart).

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
        return cls(digest, server_secret), token

    def verify(self, token: str) -> bool:
        if not keys.is_admin_token(token):
            return False
        return hmac.compare_digest(keys.digest(token, self._secret), self._digest)


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
