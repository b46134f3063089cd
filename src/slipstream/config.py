"""Settings: defaults, then a YAML/TOML file, then ``SLIPSTREAM_*`` environment variables.

Validated once at start-up so that a typo fails loudly instead of serving with a default.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipstream.catalog import ModelEntry


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "slipstream"


class EngineSettings(BaseModel):
    """Local engine limits: how many runners may be loaded at once and how much memory they may use."""

    model_config = ConfigDict(extra="forbid")

    max_loaded_models: int = Field(default=2, ge=1)
    memory_budget_bytes: int = Field(default=8 * 1024**3, ge=0, description="0 means no memory budget")
    threads: int = Field(default=max(1, os.cpu_count() or 1), ge=1)
    start_timeout_s: float = Field(default=120.0, gt=0)
    lend_client_sockets: bool = Field(
        default=True, description="let a loaded runner write a stream straight to the client's socket"
    )


class LedgerSettings(BaseModel):
    """How usage rows reach the database; what each durability level loses in a crash is in the README."""

    model_config = ConfigDict(extra="forbid")

    durability: Literal["fsync", "commit", "buffered"] = Field(
        default="commit",
        description="fsync: answered once the row is on disk (SQLite synchronous=FULL); commit: once the row's "
        "transaction commits (SQLite synchronous=NORMAL: survives the gateway dying, not the OS); "
        "buffered: rows are written up to 20 ms later and a crash loses them",
    )
    max_pending: int = Field(
        default=20_000, ge=1, description="rows waiting for the database before new requests get 503"
    )
    commit_timeout_s: float = Field(
        default=30.0, gt=0, description="how long an answer waits for its row's commit before it becomes a 503"
    )


class HttpSettings(BaseModel):
    """What one client connection may cost: bounds on its headers, its timing and the connection count.

    Every client is untrusted until its key is checked, which happens only after the headers
    (and for most routes the body) have arrived; these limits apply before that.
    """

    model_config = ConfigDict(extra="forbid")

    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="request line plus headers; beyond it: 431 and the connection closes"
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="from a new connection, or a request's first byte, until its headers are complete; "
        "then 408 (a connection that sent nothing is closed without an answer)",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="from the end of the headers until the whole body has arrived; then 408"
    )
    keep_alive_timeout_s: float = Field(default=15.0, gt=0, description="an idle connection between requests")
    max_concurrency: int = Field(
        default=1000, ge=1, description="open client connections; a request beyond them gets 503 and Retry-After"
    )
    write_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a response the client takes no byte of for this long is abandoned: the connection is "
        "reset, a stream is cancelled and billed for what was generated",
    )


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(default=None, description="defaults to SQLite in the data directory")
    public_url: str | None = Field(default=None, description="the URL clients use, shown in regions")
    region: str = "local"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    shutdown_grace_s: int = Field(
        default=10, ge=1, description="on SIGTERM/SIGINT, seconds in-flight requests may take before they are cancelled"
    )
    log_level: str = "info"
    include_builtin_models: bool = True
    models: list[ModelEntry] = Field(default_factory=list)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    metrics_require_admin: bool = Field(
        default=False,
        description="/metrics answers only with the admin token. Open (the default, for a Prometheus on a "
        "private network), it shows every model id served, also those hidden from scoped keys, with "
        "request and token counts, latencies, spend and runner memory; never keys, prompts or answers",
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'slipstream.db'}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


_ENV_FIELDS = {
    "host": "SLIPSTREAM_HOST",
    "port": "SLIPSTREAM_PORT",
    "data_dir": "SLIPSTREAM_DATA_DIR",
    "database_url": "SLIPSTREAM_DATABASE_URL",
    "public_url": "SLIPSTREAM_PUBLIC_URL",
    "max_body_bytes": "SLIPSTREAM_MAX_BODY_BYTES",
    "log_level": "SLIPSTREAM_LOG_LEVEL",
    "metrics_require_admin": "SLIPSTREAM_METRICS_REQUIRE_ADMIN",
}
_ENV_NESTED = {("ledger", "durability"): "SLIPSTREAM_LEDGER_DURABILITY"}


class ConfigError(Exception):
    """The configuration file or environment is invalid; the message says where."""


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Merge file, environment and explicit overrides (highest wins) into validated Settings."""
    data: dict[str, Any] = read_config_file(config_file) if config_file else {}
    for field, env in _ENV_FIELDS.items():
        if env in os.environ:
            data[field] = os.environ[env]
    for (section, field), env in _ENV_NESTED.items():
        if env in os.environ:
            data.setdefault(section, {})[field] = os.environ[env]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        where = f" in {config_file}" if config_file else ""
        raise ConfigError(f"invalid configuration{where}:\n{exc}") from exc
