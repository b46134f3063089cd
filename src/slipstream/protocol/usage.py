"""The OpenAI ``usage`` object, built in one place for every producer (runner, fakes)."""

from __future__ import annotations

from typing import Any


def usage(prompt: int, completion: int, cached: int = 0, *, details: bool = False) -> dict[str, Any]:
    """``details`` adds ``completion_tokens_details``, which non-streamed completions carry."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    if details:
        out["completion_tokens_details"] = {"reasoning_tokens": 0}
    return out
