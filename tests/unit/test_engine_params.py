"""Request validation names the offending param and never silently drops one."""

from __future__ import annotations

from typing import Any

import pytest

from slipstream.engine.prepare.params import parse_chat_request
from slipstream.engine.prepare.schema_support import enforceable
from slipstream.errors import SlipstreamError

MSG = [{"role": "user", "content": "hi"}]


def parse(**body: Any) -> Any:
    return parse_chat_request({"messages": MSG, **body}, default_model="m", max_n=4, n_vocab=1000)


def test_defaults() -> None:
    req = parse()
    assert req.model == "m" and req.n == 1 and req.max_tokens is None and req.tool_choice == "none"
    assert req.sampling.temperature == 1.0 and 0 <= req.sampling.seed < 2**32


def test_content_parts_are_joined_and_developer_allowed() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    req = parse_chat_request(
        {"messages": [{"role": "developer", "content": parts}]}, default_model="m", max_n=1, n_vocab=10
    )
    assert req.messages == [{"role": "developer", "content": "ab"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"n": 5}, "n", "invalid_value"),
        ({"presence_penalty": -3}, "presence_penalty", "invalid_value"),
        ({"logit_bias": {"5000": 1}}, "logit_bias", "invalid_value"),
        ({"logit_bias": {"5": 101}}, "logit_bias", "invalid_value"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"stream_options": {"x": 1}}, "stream_options.x", "unsupported_parameter"),
        ({"functions": []}, "functions", "unsupported_parameter"),
        ({"response_format": {"type": "json_object"}, "stop": "x"}, "stop", "unsupported_parameter"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "invalid_value"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ],
)
def test_rejections(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(SlipstreamError) as exc:
        parse(**body)
    assert exc.value.status == 400 and exc.value.param == param and exc.value.code == code


def test_harmless_fields_pass() -> None:
    req = parse(user="u", metadata={"a": "b"}, store=False, service_tier="auto", parallel_tool_calls=True, seed=1)
    assert req == parse(seed=1)  # accepted, and nothing in the request changes


def test_null_means_not_set() -> None:
    req = parse(functions=None, temperature=None, stop=None, tools=None, tool_choice=None, n=None, seed=None)
    assert req.sampling.temperature == 1.0 and req.n == 1 and req.tool_choice == "none"


def test_max_tokens_and_max_completion_tokens_take_the_smaller() -> None:
    assert parse(max_tokens=50, max_completion_tokens=20).max_tokens == 20


def test_small_integer_range_becomes_enum_and_others_are_refused() -> None:
    assert enforceable({"type": "integer", "minimum": 1, "maximum": 3}, "p") == {"enum": [1, 2, 3]}
    with pytest.raises(SlipstreamError) as exc:
        enforceable({"type": "object", "properties": {"x": {"type": "number", "maximum": 2}}}, "p")
    assert exc.value.code == "unsupported_parameter" and "maximum" in exc.value.message
    with pytest.raises(SlipstreamError):
        enforceable({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "p")
