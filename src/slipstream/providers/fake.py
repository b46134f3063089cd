"""A fake provider shipped in the package, for tests and benchmarks (after tensorzero's dummy).

The catalog entry's ``upstream_model`` picks the behaviour:

- ``echo`` (default): answers with the last user message; one "token" per word.
- ``slow``: like echo, 50 ms per token.
- ``error``: fails before the first byte with a 502.
- ``midstream-error``: sends two tokens, then fails.
- ``unavailable``: fails with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from slipstream.errors import ModelUnavailable, UpstreamError
from slipstream.protocol.chat import Message
from slipstream.protocol.usage import usage
from slipstream.providers.base import ChatCall, Provider, StreamEvent


def _text(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    if message.content is None:
        return ""
    return " ".join(str(getattr(part, "text", "")) for part in message.content)


class FakeProvider(Provider):
    def __init__(self, behaviour: str = "echo") -> None:
        self._behaviour = behaviour

    def _plan(self, call: ChatCall) -> tuple[list[str], int, str]:
        if self._behaviour == "error":
            raise UpstreamError("The fake upstream failed, as asked.")
        if self._behaviour == "unavailable":
            raise ModelUnavailable("The fake upstream is unavailable, as asked.", retry_after=2)
        prompt_tokens = sum(len(_text(m).split()) for m in call.request.messages)
        user = [m for m in call.request.messages if m.role == "user"]
        words = (_text(user[-1]) if user else "").split() or ["ok"]
        limit = call.request.output_limit
        finish = "stop"
        if limit is not None and limit < len(words):
            words, finish = words[:limit], "length"
        return words, prompt_tokens, finish

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        words, prompt_tokens, finish = self._plan(call)
        if self._behaviour == "slow":
            await asyncio.sleep(0.05 * len(words))
        return {
            "id": f"chatcmpl-{call.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.entry.id,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage(prompt_tokens, len(words)),
        }

    async def stream(self, call: ChatCall) -> AsyncIterator[StreamEvent]:
        words, prompt_tokens, finish = self._plan(call)
        base = {
            "id": f"chatcmpl-{call.request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
        }
        yield {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
        for i, word in enumerate(words):
            if self._behaviour == "slow":
                await asyncio.sleep(0.05)
            if self._behaviour == "midstream-error" and i == 2:
                raise UpstreamError("The fake upstream failed mid-stream, as asked.")
            piece = word if i == 0 else " " + word
            yield {
                **base,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                "usage": usage(prompt_tokens, i + 1),
            }
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {**base, "choices": [], "usage": usage(prompt_tokens, len(words))}
