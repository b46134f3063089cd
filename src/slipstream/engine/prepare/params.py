"""Validate an OpenAI chat-completions body into a ``ChatRequest``, or raise a 400 naming the param.

Nothing is silently dropped: a field we cannot honour is an ``unsupported_parameter`` error,
and an unknown field is rejected by name. Which fields exist is the request contract
(``protocol/contract.py``) that the gateway checks against too; bookkeeping fields pass unused.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from slipstream.engine.core.sampling import SamplingParams
from slipstream.engine.errors import invalid, unsupported
from slipstream.engine.prepare.schema_limits import check_schema_limits
from slipstream.errors import ContextLengthExceeded
from slipstream.protocol.contract import LOCAL_ACCEPTED

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 128  # as OpenAI; each tool's schema adds to the one grammar of a tool call


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]  # normalised: role, content (str), and tool fields
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False
    n: int = 1
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    sampling: SamplingParams = field(default_factory=SamplingParams)
    response_format: str = "text"  # text | json_object | json_schema
    json_schema: dict[str, Any] | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str = "none"  # none | auto | required | function
    tool_name: str | None = None  # for tool_choice = function


def _num(body: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise invalid(key, f"'{key}' must be a number", "invalid_type")
    if not lo <= v <= hi:
        raise invalid(key, f"'{key}' must be between {lo} and {hi}, got {v}")
    return float(v)


def _int(body: dict[str, Any], key: str, lo: int, hi: int | None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid(key, f"'{key}' must be an integer", "invalid_type")
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise invalid(key, f"'{key}' must be {bound}, got {v}")
    return v


def _bool(obj: dict[str, Any], key: str, param: str | None = None) -> bool:
    v = obj.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise invalid(param or key, f"'{param or key}' must be a boolean", "invalid_type")
    return v


def parse_chat_request(body: Any, *, default_model: str, max_n: int, n_vocab: int) -> ChatRequest:
    if not isinstance(body, dict):
        raise invalid(None, "the request body must be a JSON object", "invalid_type")
    for key, value in body.items():
        if value is not None and key not in LOCAL_ACCEPTED:  # null means "not set"
            raise unsupported(key, f"Unrecognized request argument supplied: {key}")
    model = body.get("model", default_model)
    if not isinstance(model, str):
        raise invalid("model", "'model' must be a string", "invalid_type")
    req = ChatRequest(model=model, messages=parse_messages(body.get("messages")))
    req.stream = _bool(body, "stream")
    _parse_stream_options(body, req)
    req.n = _int(body, "n", 1, max_n) or 1
    limits = [v for v in (_int(body, "max_tokens", 1, None), _int(body, "max_completion_tokens", 1, None)) if v]
    req.max_tokens = min(limits) if limits else None
    req.stop = _parse_stop(body.get("stop"))
    req.logprobs = _bool(body, "logprobs")
    top = _int(body, "top_logprobs", 0, 20)
    if top is not None and not req.logprobs:
        raise invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true")
    req.top_logprobs = top or 0
    req.ignore_eos = _bool(body, "ignore_eos")
    req.sampling = _parse_sampling(body, n_vocab)
    _parse_response_format(body.get("response_format"), req)
    _parse_tools(body, req)
    if req.response_format != "text" and req.tool_choice != "none":
        raise unsupported("response_format", "'response_format' cannot be combined with tool calling")
    constrained = req.response_format != "text" or req.tool_choice in ("required", "function")
    if constrained and req.stop:
        raise unsupported("stop", "'stop' cannot be combined with structured output (it would cut the JSON)")
    if constrained and req.ignore_eos:
        raise unsupported("ignore_eos", "'ignore_eos' cannot be combined with structured output")
    return req


def _parse_stream_options(body: dict[str, Any], req: ChatRequest) -> None:
    opts = body.get("stream_options")
    if opts is None:
        return
    if not isinstance(opts, dict):
        raise invalid("stream_options", "'stream_options' must be an object", "invalid_type")
    for key in opts:
        if key not in ("include_usage", "continuous_usage_stats"):
            raise unsupported(f"stream_options.{key}")
    req.include_usage = _bool(opts, "include_usage", "stream_options.include_usage")
    req.continuous_usage = _bool(opts, "continuous_usage_stats", "stream_options.continuous_usage_stats")


def _parse_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise invalid("stop", "'stop' must be a string or a list of strings", "invalid_type")
    if len(items) > 4:
        raise invalid("stop", "'stop' may hold at most 4 sequences")
    if any(s == "" for s in items):
        raise invalid("stop", "'stop' sequences must not be empty")
    return tuple(items)


def _parse_sampling(body: dict[str, Any], n_vocab: int) -> SamplingParams:
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise invalid("seed", "'seed' must be an integer", "invalid_type")
    bias = body.get("logit_bias")
    pairs: list[tuple[int, float]] = []
    if bias is not None:
        if not isinstance(bias, dict):
            raise invalid("logit_bias", "'logit_bias' must be an object of token id → bias", "invalid_type")
        for key, value in bias.items():
            if not (isinstance(key, str) and key.isdigit() and int(key) < n_vocab):
                raise invalid("logit_bias", f"'logit_bias' key {key!r} is not a token id of this model")
            if isinstance(value, bool) or not isinstance(value, int | float) or not -100 <= value <= 100:
                raise invalid("logit_bias", f"'logit_bias' values must be numbers in [-100, 100], got {value!r}")
            pairs.append((int(key), float(value)))
    repeat = _num(body, "repeat_penalty", 0.0, 10.0, 1.0)
    if repeat == 0.0:
        raise invalid("repeat_penalty", "'repeat_penalty' must be greater than 0")
    return SamplingParams(
        temperature=_num(body, "temperature", 0.0, 2.0, 1.0),
        top_p=_num(body, "top_p", 0.0, 1.0, 1.0),
        top_k=_int(body, "top_k", 0, None) or 0,
        min_p=_num(body, "min_p", 0.0, 1.0, 0.0),
        repeat_penalty=repeat,
        presence_penalty=_num(body, "presence_penalty", -2.0, 2.0, 0.0),
        frequency_penalty=_num(body, "frequency_penalty", -2.0, 2.0, 0.0),
        logit_bias=tuple(pairs),
        seed=(seed if seed is not None else secrets.randbits(32)) & 0xFFFFFFFF,
    )


def parse_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise invalid("messages", "'messages' must be an array", "invalid_type")
    if not messages:
        raise invalid("messages", "'messages' must contain at least one message")
    return [_parse_message(i, m) for i, m in enumerate(messages)]


def _parse_message(i: int, msg: Any) -> dict[str, Any]:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise invalid(where, f"'{where}' must be an object", "invalid_type")
    role = msg.get("role")
    if role not in ROLES:
        raise invalid(f"{where}.role", f"'{where}.role' must be one of {sorted(ROLES)}, got {role!r}")
    out: dict[str, Any] = {"role": role, "content": _content(where, msg.get("content"), role)}
    if isinstance(msg.get("name"), str):
        out["name"] = msg["name"]
    if role == "tool":
        call_id = msg.get("tool_call_id")
        if not isinstance(call_id, str):
            raise invalid(f"{where}.tool_call_id", "a 'tool' message needs a string 'tool_call_id'")
        out["tool_call_id"] = call_id
    if role == "assistant" and msg.get("tool_calls") is not None:
        out["tool_calls"] = _tool_calls(where, msg["tool_calls"])
    if out["content"] is None and "tool_calls" not in out:
        raise invalid(f"{where}.content", f"'{where}.content' is required")
    return out


def _content(where: str, content: Any, role: str) -> str | None:
    if content is None:
        return None if role == "assistant" else ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where}.content", f"'{where}.content' must be a string or an array", "invalid_type")
    texts = []
    for j, part in enumerate(content):
        p = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise invalid(p, f"'{p}' must be an object", "invalid_type")
        if part.get("type") != "text":
            raise unsupported(f"{p}.type", f"content part type {part.get('type')!r} is not supported; use 'text'")
        if not isinstance(part.get("text"), str):
            raise invalid(f"{p}.text", f"'{p}.text' must be a string", "invalid_type")
        texts.append(part["text"])
    return "".join(texts)


def _tool_calls(where: str, calls: Any) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls", "'tool_calls' must be an array", "invalid_type")
    out = []
    for j, call in enumerate(calls):
        p = f"{where}.tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid(p, f"'{p}' must be {{'type': 'function', 'function': {{'name', 'arguments'}}}}")
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            raise invalid(f"{p}.function.arguments", "'arguments' must be a JSON string", "invalid_type")
        out.append({"id": str(call.get("id", "")), "name": fn["name"], "arguments": args})
    return out


def _parse_response_format(fmt: Any, req: ChatRequest) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("response_format", "'response_format.type' must be text, json_object or json_schema")
    req.response_format = fmt["type"]
    if fmt["type"] != "json_schema":
        return
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise invalid("response_format.json_schema", "'json_schema' must be an object with a 'name'")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise invalid("response_format.json_schema.schema", "'schema' must be a JSON Schema object")
    check_schema_limits(schema, "response_format.json_schema.schema")
    req.json_schema = schema


def _parse_tools(body: dict[str, Any], req: ChatRequest) -> None:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools", "'tools' must be an array", "invalid_type")
        if len(tools) > MAX_TOOLS:
            raise invalid("tools", f"'tools' may hold at most {MAX_TOOLS} functions, got {len(tools)}")
        for i, tool in enumerate(tools):
            req.tools.append(_tool(i, tool))
    if choice is None:
        req.tool_choice = "auto" if req.tools else "none"
        return
    if not req.tools:
        raise invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are specified")
    if choice in ("none", "auto", "required"):
        req.tool_choice = choice
        return
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise invalid("tool_choice", "'tool_choice' must be none, auto, required or a function object")
    if name not in {t.name for t in req.tools}:
        raise invalid("tool_choice", f"'tool_choice' names function {name!r}, which is not in 'tools'")
    req.tool_choice, req.tool_name = "function", name


def _tool(i: int, tool: Any) -> Tool:
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise unsupported(f"{where}.type", "only tools of type 'function' are supported")
    fn = tool.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not _TOOL_NAME.match(fn["name"]):
        raise invalid(f"{where}.function.name", "a function name must match ^[A-Za-z0-9_-]{1,64}$")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise invalid(f"{where}.function.parameters", "'parameters' must be a JSON Schema object")
    check_schema_limits(params, f"{where}.function.parameters")
    desc = fn.get("description", "")
    if not isinstance(desc, str):
        raise invalid(f"{where}.function.description", "'description' must be a string", "invalid_type")
    return Tool(fn["name"], desc, params)


def context_error(prompt_tokens: int, max_tokens: int | None, n_ctx: int) -> ContextLengthExceeded:
    need = prompt_tokens + (max_tokens or 0)
    return ContextLengthExceeded(
        f"This model's maximum context length is {n_ctx} tokens. However, you requested {need} tokens "
        f"({prompt_tokens} in the messages, {max_tokens or 0} in the completion). "
        "Please reduce the length of the messages or completion.",
        param="messages",
    )
