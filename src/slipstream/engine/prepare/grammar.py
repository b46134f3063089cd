"""GBNF grammars that make structured output parse by construction.

With a grammar in the sampler chain the model can only emit tokens that keep the output a
valid prefix, and end-of-generation is allowed only once the document is complete. So the
one way to get invalid JSON is a ``max_tokens`` cut-off, which is reported truthfully as
``finish_reason: "length"``.
"""

from __future__ import annotations

import json
from typing import Any

from slipstream.engine.errors import invalid
from slipstream.engine.prepare.grammar_limits import check_gbnf
from slipstream.engine.prepare.params import ChatRequest, Tool
from slipstream.engine.prepare.prompt import TOOL_CLOSE, TOOL_OPEN
from slipstream.engine.prepare.schema_support import enforceable

# the converter's string rule admits raw control characters, which strict JSON parsers reject
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
_CALL_RULE = "slipstream-call"


def schema_grammar(
    schema: dict[str, Any], *, prop_order: list[str] | None = None, param: str = "response_format.json_schema.schema"
) -> str:
    """The grammar for ``schema``, already measured (``grammar_limits.py``) so llama.cpp accepts it.

    ``schema`` has passed ``schema_limits.check_schema_limits`` (in ``params.py``)."""
    from llama_cpp.llama_grammar import JSON_GBNF

    from slipstream.engine.prepare.gbnf_converter import json_schema_to_gbnf

    if not schema or schema == {"type": "object"}:
        return str(JSON_GBNF)
    schema = enforceable(schema, param)
    try:
        gbnf = json_schema_to_gbnf(schema, prop_order=prop_order)
    except Exception as exc:  # the converter raises bare exceptions for schemas it cannot express
        raise invalid(param, f"unsupported JSON schema: {exc}") from exc
    check_gbnf(gbnf, param)
    return gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)


def tool_call_schema(tools: list[Tool]) -> dict[str, Any]:
    """``{"name": <one tool>, "arguments": <its parameters>}`` for any of ``tools``."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_call_grammar(tools: list[Tool]) -> str:
    """``<tool_call>{json}</tool_call>`` with the JSON constrained to one of ``tools``."""
    body = schema_grammar(tool_call_schema(tools), prop_order=["name", "arguments"], param="tools")
    lines = []
    for line in body.splitlines():
        if line.startswith("root ::="):
            line = f"{_CALL_RULE} ::=" + line[len("root ::=") :]
        lines.append(line)
    lines.append(f"root ::= {json.dumps(TOOL_OPEN)} {_CALL_RULE} {json.dumps(TOOL_CLOSE)}")
    return "\n".join(lines) + "\n"


def request_grammar(req: ChatRequest) -> tuple[str | None, str | None]:
    """The grammar for a request and, for ``tool_choice: auto``, the regex that switches it on."""
    if req.tool_choice in ("required", "function"):
        tools = [t for t in req.tools if req.tool_name in (None, t.name)]
        return tool_call_grammar(tools), None
    if req.tool_choice == "auto":
        trigger = "[\\s\\S]*?(" + TOOL_OPEN + "[\\s\\S]*)"
        return tool_call_grammar(req.tools), trigger
    if req.response_format == "json_object":
        return schema_grammar({}), None
    if req.response_format == "json_schema":
        return schema_grammar(req.json_schema or {}), None
    return None, None
