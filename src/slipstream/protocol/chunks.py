"""OpenAI chat-completion shapes: the response object and its stream chunks.

Written once for both processes: the runner builds chunks from engine output (``ChunkWriter``),
the gateway's relay reshapes an upstream's chunks (``ChunkShaper``), and a stream lent to a
runner must carry the same bytes the relay would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChunkIdentity:
    """What every chunk of a response carries: our id, our creation time, the client's model name."""

    id: str
    created: int
    model: str


def _head(identity: ChunkIdentity) -> dict[str, Any]:
    return {"id": identity.id, "object": "chat.completion.chunk", "created": identity.created, "model": identity.model}


class ChunkWriter:
    """Builds the stream chunks of one response; all share its identity."""

    def __init__(self, identity: ChunkIdentity, *, usage_key: bool = True) -> None:
        self._head = _head(identity)
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


class ChunkShaper:
    """Gives upstream chunks our identity and the usage fields the client asked for."""

    __slots__ = ("_continuous", "_head", "_include_usage")

    def __init__(self, identity: ChunkIdentity, *, include_usage: bool, continuous: bool) -> None:
        self._head = _head(identity)
        self._include_usage = include_usage
        self._continuous = continuous

    def shape(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """The chunk as the client sees it, changed in place; None: not for this client."""
        is_usage_only = not chunk.get("choices")
        if is_usage_only and not (self._include_usage and chunk.get("usage")):
            return None
        chunk.update(self._head)
        chunk.setdefault("system_fingerprint", None)
        if not is_usage_only:
            if self._include_usage and not self._continuous:
                chunk["usage"] = None
            elif not self._continuous:
                chunk.pop("usage", None)
            for choice in chunk["choices"]:
                choice.setdefault("logprobs", None)
        return chunk


def completion(identity: ChunkIdentity, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": identity.id,
        "object": "chat.completion",
        "created": identity.created,
        "model": identity.model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
    }


def choice(
    index: int,
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str | None,
    logprobs: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    lp = {"content": logprobs, "refusal": None} if logprobs is not None else None
    return {"index": index, "message": message, "logprobs": lp, "finish_reason": finish_reason}
