"""Split one choice's generated text into content and a tool call, incrementally.

The model writes a call as ``<tool_call>{"name": "f", "arguments": {...}}</tool_call>``
(the grammar guarantees the JSON once the opening tag appears). Text before the tag is
content; after it, the name is announced as soon as it is known and the arguments string is
streamed in pieces, holding back only what could still be the closing ``}</tool_call>``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from slipstream.engine.prepare.prompt import TOOL_CLOSE, TOOL_OPEN

_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str = ""


@dataclass
class Piece:
    """One increment of output: content text, a new tool call, or more of its arguments."""

    content: str = ""
    call: ToolCall | None = None  # set on the piece that starts a call
    arguments: str = ""


class ChoiceOutput:
    def __init__(self, tools_enabled: bool) -> None:
        self._tools = tools_enabled
        self._held = ""  # content that may be the start of TOOL_OPEN
        self._raw: str | None = None  # text after TOOL_OPEN, once seen
        self._args_start = -1
        self._args_sent = 0
        self.content = ""
        self.call: ToolCall | None = None

    def feed(self, text: str) -> list[Piece]:
        if not self._tools:
            self.content += text
            return [Piece(content=text)] if text else []
        if self._raw is not None:
            self._raw += text
            return self._advance_call()
        buf = self._held + text
        at = buf.find(TOOL_OPEN)
        if at >= 0:
            self._held = ""
            self._raw = buf[at + len(TOOL_OPEN) :]
            out = self._content(buf[:at])
            return out + self._advance_call()
        hold = next((k for k in range(min(len(TOOL_OPEN) - 1, len(buf)), 0, -1) if buf.endswith(TOOL_OPEN[:k])), 0)
        self._held = buf[len(buf) - hold :]
        return self._content(buf[: len(buf) - hold])

    def finish(self) -> list[Piece]:
        """End of generation: release held text; return the final pieces."""
        if self._raw is None:
            held, self._held = self._held, ""
            return self._content(held)
        return self._advance_call(final=True)

    @property
    def call_complete(self) -> bool:
        """Whether the call's JSON and closing tag were fully generated."""
        if self._raw is None or self.call is None:
            return False
        body = self._raw.rstrip()
        if not body.endswith(TOOL_CLOSE):
            return False
        try:
            json.loads(body[: -len(TOOL_CLOSE)])
        except ValueError:
            return False
        return True

    def _content(self, text: str) -> list[Piece]:
        if not text:
            return []
        self.content += text
        return [Piece(content=text)]

    def _advance_call(self, final: bool = False) -> list[Piece]:
        assert self._raw is not None
        out: list[Piece] = []
        if self.call is None:
            m = _HEADER.match(self._raw)
            if m is None:
                return out
            self.call = ToolCall("call_" + secrets.token_hex(12), json.loads(f'"{m.group(1)}"'))
            self._args_start = self._args_sent = m.end()
            out.append(Piece(call=self.call))
        raw = self._raw
        end = _args_end(raw, self._args_start, cut_off=final and not self.call_complete)
        if end > self._args_sent:
            piece = raw[self._args_sent : end]
            self._args_sent = end
            self.call.arguments += piece
            out.append(Piece(arguments=piece))
        return out


def _args_end(raw: str, start: int, *, cut_off: bool = False) -> int:
    """How much of ``raw`` is surely argument text: drop a tail that may be ``}</tool_call>``.

    ``cut_off``: generation stopped mid-call, so a trailing ``}`` without a closing tag after it
    belongs to the (truncated) arguments.
    """
    t = raw.rstrip()
    tagged = False
    for k in range(len(TOOL_CLOSE), 0, -1):
        if t.endswith(TOOL_CLOSE[:k]):
            t, tagged = t[:-k].rstrip(), True
            break
    if t.endswith("}") and (tagged or not cut_off):
        t = t[:-1].rstrip()
    return max(len(t), start)
