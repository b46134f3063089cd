"""One usage row: what a single request consumed and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

STATUSES = frozenset({"ok", "error", "cancelled"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class UsageRecord:
    """Mirrors the ``usage`` table. ``request_id`` is the idempotency key; ``status`` is one of
    ``STATUSES``; ``cost_picousd`` is US dollars × 10**12."""

    request_id: str
    key_uuid: str
    key_name: str
    model: str
    provider: str
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_picousd: int = 0
    status: str = "ok"
    http_status: int = 200
    error_code: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    created_at: datetime = field(default_factory=_now)

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES = tuple(f.name for f in fields(UsageRecord))
