"""The schema, in SQLAlchemy Core. Alembic revisions under ``migrations/`` must match it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


api_keys = Table(
    "api_keys",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_digest", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("models", JSON, nullable=True, comment="list of model ids; NULL means all models"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Index("ix_api_keys_secret_digest", "secret_digest", unique=True),
    Index("ix_api_keys_created_at", "created_at"),
)

usage = Table(
    "usage",
    metadata,
    Column("request_id", String(128), primary_key=True, comment="idempotency key"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("key_uuid", String(36), nullable=False),
    Column("key_name", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_picousd", BigInteger, nullable=False, comment="US dollars times 10**12"),
    Column("status", String(16), nullable=False, comment="ok | error | cancelled"),
    Column("http_status", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("stream", Boolean, nullable=False),
    Index("ix_usage_created_at", "created_at"),
    Index("ix_usage_key_uuid_created_at", "key_uuid", "created_at"),
)

server_state = Table(
    "server_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
