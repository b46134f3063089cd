"""Initial schema: model access keys, the usage ledger and server state.

Revision ID: r0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True, comment="list of model ids; NULL means all models"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("uuid", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_secret_digest", "api_keys", ["secret_digest"], unique=True)
    op.create_index("ix_api_keys_created_at", "api_keys", ["created_at"])

    op.create_table(
        "usage",
        sa.Column("request_id", sa.String(128), nullable=False, comment="idempotency key"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("key_uuid", sa.String(36), nullable=False),
        sa.Column("key_name", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_picousd", sa.BigInteger(), nullable=False, comment="US dollars times 10**12"),
        sa.Column("status", sa.String(16), nullable=False, comment="ok | error | cancelled"),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_usage"),
    )
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
    op.create_index("ix_usage_key_uuid_created_at", "usage", ["key_uuid", "created_at"])

    op.create_table(
        "server_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_server_state"),
    )


def downgrade() -> None:
    op.drop_table("server_state")
    op.drop_index("ix_usage_key_uuid_created_at", table_name="usage")
    op.drop_index("ix_usage_created_at", table_name="usage")
    op.drop_table("usage")
    op.drop_index("ix_api_keys_created_at", table_name="api_keys")
    op.drop_index("ix_api_keys_secret_digest", table_name="api_keys")
    op.drop_table("api_keys")
