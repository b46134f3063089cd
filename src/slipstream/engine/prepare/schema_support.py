"""Make sure a JSON schema's grammar really enforces the schema, or refuse it with a 400.

llama-cpp-python's schema → GBNF converter silently ignores some keywords (numeric bounds,
``uniqueItems``, ``not``…), so output could parse yet fail validation. Small integer ranges
are rewritten as an ``enum`` (which the grammar does enforce); anything else the converter
cannot enforce is rejected by name instead of being dropped.
"""

from __future__ import annotations

import math
from typing import Any

from slipstream.engine.errors import unsupported

MAX_ENUM_RANGE = 256
UNENFORCEABLE = frozenset(
    {
        "multipleOf", "uniqueItems", "minProperties", "maxProperties", "not", "if", "then", "else",
        "dependentRequired", "dependentSchemas", "dependencies", "patternProperties", "propertyNames",
        "contains", "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems",
    }
)  # fmt: skip
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties")


def enforceable(schema: Any, param: str) -> Any:
    """A copy of ``schema`` the grammar fully enforces; raises ``unsupported_parameter`` otherwise."""
    if not isinstance(schema, dict):
        return schema
    for key in schema:
        if key in UNENFORCEABLE:
            raise _refuse(param, key)
    out = dict(schema)
    if any(b in out for b in _BOUNDS):
        return _bounded_integer(out, param)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: enforceable(v, f"{param}.{key}.{k}") for k, v in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [enforceable(v, f"{param}.{key}[{i}]") for i, v in enumerate(out[key])]
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict | list):
            out[key] = enforceable(out[key], f"{param}.{key}")
    return out


def _bounded_integer(schema: dict[str, Any], param: str) -> dict[str, Any]:
    if schema.get("type") != "integer" or "enum" in schema or "const" in schema:
        raise _refuse(param, "minimum/maximum", "numeric bounds are only supported on integers")
    lo = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        lo = max(lo if lo is not None else -(2**63), int(schema["exclusiveMinimum"]) + 1)
    hi = schema.get("maximum")
    if "exclusiveMaximum" in schema:
        hi = min(hi if hi is not None else 2**63, int(schema["exclusiveMaximum"]) - 1)
    if lo is None or hi is None or hi - lo >= MAX_ENUM_RANGE:
        raise _refuse(param, "minimum/maximum", f"integer bounds need both ends and at most {MAX_ENUM_RANGE} values")
    values = list(range(math.ceil(lo), math.floor(hi) + 1))
    if not values:
        raise _refuse(param, "minimum/maximum", "the integer range is empty")
    return {k: v for k, v in schema.items() if k not in (*_BOUNDS, "type")} | {"enum": values}


def _refuse(param: str, keyword: str, why: str = "the grammar cannot enforce it") -> Exception:
    return unsupported(param, f"JSON schema keyword '{keyword}' at '{param}' is not supported: {why}")
