"""OpenAI chat-completion shapes (response, chunk, usage, logprobs) built from engine output."""

from __future__ import annotations

import secrets
from typing import Any

from slipstream.engine.llama_backend import LlamaModel
from slipstream.engine.sampling import TokenLogprob
from slipstream.engine.tool_calls import Piece, ToolCall


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def _token_entry(model: LlamaModel, token: int, logprob: float) -> dict[str, Any]:
    raw = model.piece(token)
    return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}


def logprob_items(model: LlamaModel, items: list[TokenLogprob]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        entry = _token_entry(model, item.token, item.logprob)
        entry["top_logprobs"] = [_token_entry(model, t, lp) for t, lp in item.top]
        out.append(entry)
    return out


def tool_call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def piece_delta(piece: Piece) -> dict[str, Any]:
    if piece.call is not None:
        fn = {"name": piece.call.name, "arguments": ""}
        return {"tool_calls": [{"index": 0, "id": piece.call.id, "type": "function", "function": fn}]}
    if piece.arguments:
        return {"tool_calls": [{"index": 0, "function": {"arguments": piece.arguments}}]}
    return {"content": piece.content}


class ChunkWriter:
    """Serialises stream chunks of one response; all share id, created and model."""

    def __init__(self, rid: str, created: int, model: str, *, usage_key: bool = True) -> None:
        self._head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        self._usage_key = usage_key  # OpenAI omits "usage" unless the client asked for it

    def chunk(
        self,
        index: int,
        delta: dict[str, Any],
        *,
        logprobs: list[dict[str, Any]] | None = None,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        lp = {"content": logprobs, "refusal": None} if logprobs is not None else None
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}
        chunk = {**self._head, "system_fingerprint": None, "choices": [choice]}
        if self._usage_key:
            chunk["usage"] = usage
        return chunk

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._head, "system_fingerprint": None, "choices": [], "usage": usage}


def completion(
    rid: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
    }


def choice(
    index: int,
    content: str | None,
    calls: list[ToolCall],
    finish_reason: str | None,
    logprobs: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = [tool_call_dict(c) for c in calls]
    lp = {"content": logprobs, "refusal": None} if logprobs is not None else None
    return {"index": index, "message": message, "logprobs": lp, "finish_reason": finish_reason}
