"""OpenAI chat-completions request validation.

Strict types (a string is not a number), OpenAI's ranges, and unknown fields kept in
``model_extra`` so each provider can decide whether it can honour them: a parameter that
cannot be honoured is rejected by name, never silently dropped.

The fields are the request contract's ``CORE_PARAMS`` and ``BOOKKEEPING_PARAMS``
(``protocol/contract.py``, which the runner checks against too; a unit test keeps this model's
fields equal to them). A bookkeeping parameter a provider does not list in
``forwarded_bookkeeping`` is dropped before the call and named in the
``x-slipstream-dropped-params`` response header; anything else is a provider's own knob
(``Provider.extra_params``, such as the local runner's ``top_k``) or a 400
``unsupported_parameter`` naming it (``Provider.check``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slipstream.errors import InvalidRequest
from slipstream.protocol.contract import BOOKKEEPING_PARAMS


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str = Field(min_length=1)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts_not_empty(cls, value: str | list[TextPart] | None) -> str | list[TextPart] | None:
        if isinstance(value, list) and not value:
            raise ValueError("content parts must not be empty")
        return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False
    continuous_usage_stats: bool = False


Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    user: str | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if isinstance(value, list) and any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value

    @property
    def wants_stream(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def extra_params(self) -> list[str]:
        return sorted(self.model_extra or ())

    def bookkeeping_params(self) -> list[str]:
        """The bookkeeping parameters this request sets (a null is "not set")."""
        return sorted(p for p in BOOKKEEPING_PARAMS if getattr(self, p) is not None)


def _param_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in {"str", "list[TextPart]", "float", "int", "bool"} or "[" in item:
            continue  # pydantic's union-branch labels say nothing to a client
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def parse_chat_request(body: Any) -> ChatCompletionRequest:
    """Validate a decoded JSON body, turning the first problem into a 400 that names the parameter."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_request_body")
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _param_path(tuple(first["loc"])) or None
        message = first["msg"]
        if first["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
        elif param:
            message = f"Invalid value for '{param}': {message}."
        raise InvalidRequest(message, param=param, code="invalid_value") from None
