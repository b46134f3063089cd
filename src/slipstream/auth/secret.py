"""The server secret: the HMAC key under which every model access key and admin token is stored.

Losing it invalidates every key, and leaking it lets an attacker test guesses offline, so the
server refuses to start with a weak one rather than quietly using it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from slipstream.config import ConfigError

SECRET_FILE = "server.secret"
ENV_VAR = "SLIPSTREAM_SECRET"
MIN_LENGTH = 32
_MIN_DISTINCT = 8


def load_or_create_server_secret(data_dir: Path) -> bytes:
    """``$SLIPSTREAM_SECRET`` if set, else ``data_dir/server.secret``, generated (mode 0600) on first run.

    The file holds 64 hex characters (32 random bytes) and its text is the key, so
    ``SLIPSTREAM_SECRET=$(cat server.secret)`` on another replica yields the same digests.
    """
    from_env = os.environ.get(ENV_VAR)
    if from_env is not None:
        return _check_strength(from_env.strip(), f"${ENV_VAR}").encode("utf-8")
    path = data_dir / SECRET_FILE
    if not path.exists():
        _create(path)
    return _read(path)


def _check_strength(value: str, where: str) -> str:
    if len(value) < MIN_LENGTH:
        raise ConfigError(
            f"{where} is too short ({len(value)} characters); the server secret needs at least "
            f"{MIN_LENGTH}, for example: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if len(set(value)) < _MIN_DISTINCT:
        raise ConfigError(f"{where} is too repetitive to be a secret; generate a random one")
    return value


def _read(path: Path) -> bytes:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is accessible to group or others (mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:  # raw random bytes written by an operator are fine too
        if len(raw) < MIN_LENGTH:
            raise ConfigError(f"{path} holds {len(raw)} bytes; the server secret needs {MIN_LENGTH}") from None
        return raw
    return _check_strength(text, str(path)).encode("ascii")


def _create(path: Path) -> None:
    """Write a fresh secret atomically; if another process wins the race, keep theirs."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if the file appeared meanwhile: the first writer wins
    finally:
        tmp.unlink(missing_ok=True)
