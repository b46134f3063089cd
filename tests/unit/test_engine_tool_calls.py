"""Tool-call text → content, one call, and argument pieces that concatenate exactly."""

from __future__ import annotations

import json

from slipstream.engine.deliver.tool_calls import ChoiceOutput


def feed_all(out: ChoiceOutput, pieces: list[str]) -> tuple[str, str, list[str]]:
    content, args, names = "", "", []
    for p in [*pieces, None]:
        got = out.finish() if p is None else out.feed(p)
        for piece in got:
            content += piece.content
            args += piece.arguments
            if piece.call is not None:
                names.append(piece.call.name)
    return content, args, names


def test_required_call_streams_arguments_in_pieces() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}</tool_call>'
    out = ChoiceOutput(True)
    content, args, names = feed_all(out, [text[i : i + 3] for i in range(0, len(text), 3)])
    assert content == "" and names == ["get_weather"]
    assert args == '{"city": "Paris", "days": 2}' == out.call.arguments  # type: ignore[union-attr]
    assert json.loads(args) == {"city": "Paris", "days": 2}
    assert out.call_complete


def test_text_then_call_in_auto_mode() -> None:
    out = ChoiceOutput(True)
    content, args, names = feed_all(
        out, ["Let me check. <to", "ol_call>", '{"name":"f","arguments":{}}', "</tool_call>"]
    )
    assert content == "Let me check. " and names == ["f"] and args == "{}"


def test_plain_text_with_angle_bracket_is_content() -> None:
    out = ChoiceOutput(True)
    content, _args, names = feed_all(out, ["a <b> c <to"])
    assert content == "a <b> c <to" and names == [] and out.call is None


def test_cut_off_call_keeps_truncated_arguments() -> None:
    out = ChoiceOutput(True)
    _, args, _ = feed_all(out, ['<tool_call>{"name": "f", "arguments": {"a": {"b": 1}'])
    assert args == '{"a": {"b": 1}' and not out.call_complete


def test_tools_disabled_passes_everything_through() -> None:
    out = ChoiceOutput(False)
    content, _, names = feed_all(out, ["<tool_call>{}</tool_call>"])
    assert content == "<tool_call>{}</tool_call>" and names == []
