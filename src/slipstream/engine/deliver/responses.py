"""Engine output in OpenAI terms: token logprobs, tool-call deltas, completion ids.

The response and chunk shapes themselves are ``protocol/chunks.py``, shared with the gateway.
"""

from __future__ import annotations

import secrets
from typing import Any

from slipstream.engine.core.llama_backend import LlamaModel
from slipstream.engine.core.sampling import TokenLogprob
from slipstream.engine.deliver.tool_calls import Piece, ToolCall


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
