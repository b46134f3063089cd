"""Bound everything a client's JSON schema can make the grammar repeat, before it is compiled.

A schema becomes a GBNF grammar that llama.cpp parses recursively on the runner, so an
unbounded ``maxLength``, ``maxItems``, nesting depth, enum or property count is a way for any
key holder to crash the runner (every in-flight request with it) or to make it dump a huge
grammar to stderr. Each such keyword is checked here with a 400 that names it, its place and
its limit; ``grammar_limits.py`` is the safety net on the compiled grammar itself.

The limits leave room for real schemas: OpenAI's own structured outputs allow 10 levels of
nesting and 1000 enum values in all; Pydantic writes ``max_length`` in the low thousands.
"""

from __future__ import annotations

from typing import Any

import orjson

from slipstream.engine.errors import invalid

MAX_DEPTH = 64  # nested JSON containers (a level of "properties" is two: the map and the schema)
MAX_VALUES = 10_000  # schemas, keywords and values, all counted
MAX_SCHEMA_BYTES = 64 * 1024  # the schema serialised
MAX_REPEAT = 4096  # maxLength / minLength / maxItems / minItems
MAX_PROPERTIES = 256  # per object schema
MAX_ENUM = 512  # values of one enum
MAX_PATTERN = 1024  # characters of one regex pattern
_REPEATS = ("minLength", "maxLength", "minItems", "maxItems")
_PAIRS = (("minLength", "maxLength"), ("minItems", "maxItems"))
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_ONE = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
     "unevaluatedItems", "unevaluatedProperties", "additionalItems"}
)  # fmt: skip


def check_schema_limits(schema: Any, param: str) -> None:
    """Raise a 400 ``invalid_value`` naming the first keyword over its bound, or return."""
    stack: list[tuple[Any, str, int, bool]] = [(schema, param, 1, True)]
    seen = 0
    while stack:
        value, path, depth, is_schema = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise _over(param, "size", f"at most {MAX_VALUES} schemas and values in all")
        if depth > MAX_DEPTH and isinstance(value, dict | list):
            raise _over(path, "nesting depth", f"at most {MAX_DEPTH} nested objects and arrays")
        if isinstance(value, list | dict) and len(value) > MAX_VALUES - seen:
            raise _over(param, "size", f"at most {MAX_VALUES} schemas and values in all")
        if isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1, False) for i, v in enumerate(value))
        elif isinstance(value, dict):
            if is_schema:
                _check_keywords(value, path)
            stack.extend(_children(value, path, depth, is_schema))
    size = len(orjson.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise _over(param, "size", f"at most {MAX_SCHEMA_BYTES} bytes of JSON, got {size}")


def _children(node: dict[str, Any], path: str, depth: int, is_schema: bool) -> list[tuple[Any, str, int, bool]]:
    out: list[tuple[Any, str, int, bool]] = []
    for key, sub in node.items():
        where = f"{path}.{key}"
        if not is_schema:
            out.append((sub, where, depth + 1, False))
        elif key in _SCHEMA_MAPS and isinstance(sub, dict):
            out.extend((v, f"{where}.{k}", depth + 2, True) for k, v in sub.items())
        elif (key in _SCHEMA_LISTS or key in _SCHEMA_ONE) and isinstance(sub, list):  # incl. tuple "items"
            out.extend((v, f"{where}[{i}]", depth + 2, True) for i, v in enumerate(sub))
        else:
            out.append((sub, where, depth + 1, key in _SCHEMA_ONE))
    return out


def _check_keywords(node: dict[str, Any], path: str) -> None:
    for key in _REPEATS:
        if key not in node:
            continue
        n = node[key]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise invalid(f"{path}.{key}", f"JSON schema keyword '{key}' at '{path}' must be a non-negative integer")
        if n > MAX_REPEAT:
            raise _over(f"{path}.{key}", key, f"at most {MAX_REPEAT}, got {n}")
    for lo, hi in _PAIRS:
        if lo in node and hi in node and node[lo] > node[hi]:
            raise invalid(f"{path}.{lo}", f"JSON schema keyword '{lo}' at '{path}' is greater than '{hi}'")
    props = node.get("properties")
    if isinstance(props, dict) and len(props) > MAX_PROPERTIES:
        raise _over(f"{path}.properties", "properties", f"at most {MAX_PROPERTIES} per object, got {len(props)}")
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) > MAX_ENUM:
        raise _over(f"{path}.enum", "enum", f"at most {MAX_ENUM} values, got {len(enum)}")
    pattern = node.get("pattern")
    if isinstance(pattern, str) and len(pattern) > MAX_PATTERN:
        raise _over(f"{path}.pattern", "pattern", f"at most {MAX_PATTERN} characters, got {len(pattern)}")


def _over(param: str, keyword: str, limit: str) -> Exception:
    return invalid(param, f"JSON schema '{keyword}' at '{param}' exceeds this server's limit: {limit}")
