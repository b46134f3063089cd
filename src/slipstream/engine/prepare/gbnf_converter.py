# mypy: disable-error-code="no-untyped-call"
"""JSON schema → GBNF, with length and item bounds as flat rule chains instead of nested groups.

llama-cpp-python's converter writes ``maxLength: N`` (and ``maxItems``) as ``N`` nested groups,
``(c (c (c)?)?)?``. llama.cpp parses each group recursively and refuses any group holding 2000
generated rules, so a bound much past 1000 is refused (with the grammar dumped to stderr) and
one near 20000 overflows the runner's stack. Here a bound becomes a chain of named rules,
``r3 ::= c r2 | ""``, which parses flat, so every bound up to ``schema_limits.MAX_REPEAT``
compiles. Everything else is the stock converter.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, STRING_FORMAT_RULES, SchemaConverter

_SEP = '"," space'
# keywords the stock converter looks at before a string's or an array's bounds
_EARLIER = ("$ref", "oneOf", "anyOf", "const", "enum")


class FlatRepetitionConverter(SchemaConverter):  # type: ignore[misc]
    def __init__(self, prop_order: list[str] | None) -> None:
        order = {name: i for i, name in enumerate(prop_order or [])}
        super().__init__(prop_order=order, allow_fetch=False, dotall=False, raw_pattern=False)
        self._chains = 0

    def visit(self, schema: dict[str, Any], name: str) -> str:
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        if any(k in schema for k in _EARLIER):
            return str(super().visit(schema, name))
        if (
            schema.get("type") == "string"
            and "maxLength" in schema
            and "pattern" not in schema
            and not _format_rule(schema.get("format"))
        ):
            char = self._add_primitive("char", PRIMITIVE_RULES["char"])
            body = self._bounded(char, schema.get("minLength", 0), schema["maxLength"], None)
            return str(self._add_rule(rule_name, r'"\"" ' + body + r' "\"" space'))
        items = schema.get("items")
        if schema.get("type") == "array" and isinstance(items, dict) and items and "maxItems" in schema:
            item = self.visit(items, f"{name}{'-' if name else ''}item")
            body = self._bounded(item, schema.get("minItems", 0), schema["maxItems"], _SEP)
            return str(self._add_rule(rule_name, '"[" space ' + body + ' "]" space'))
        return str(super().visit(schema, name))

    def _bounded(self, item: str, lo: int, hi: int, sep: str | None) -> str:
        """``lo`` to ``hi`` of ``item`` (separated by ``sep``): the fixed part inline, the optional
        part as a chain ``rN ::= step rN-1 | ""`` of named rules."""
        step = f"{sep} {item}" if sep else item
        fixed = [item, *[step] * (lo - 1)] if lo > 0 else []
        optional = hi - lo
        if lo == 0 and sep and optional > 0:  # the first item takes no separator
            tail = self._chain(step, optional - 1)
            return self._rule(f"{item} {tail}".rstrip() + ' | ""')
        tail = self._chain(step, optional)
        return " ".join([*fixed, tail]).strip() or '""'

    def _chain(self, step: str, n: int) -> str:
        """A rule matching up to ``n`` of ``step``, or "" for ``n == 0``."""
        prev = ""
        for _ in range(n):
            prev = self._rule(f"{step} {prev}".rstrip() + ' | ""')
        return prev

    def _rule(self, body: str) -> str:
        self._chains += 1
        return str(self._add_rule(f"rep-{self._chains}", body))


def _format_rule(fmt: Any) -> bool:
    """Whether the stock converter has a rule for this string ``format`` (and ignores lengths)."""
    return isinstance(fmt, str) and (bool(re.match(r"^uuid[1-5]?$", fmt)) or f"{fmt}-string" in STRING_FORMAT_RULES)


def json_schema_to_gbnf(schema: dict[str, Any], prop_order: list[str] | None = None) -> str:
    converter = FlatRepetitionConverter(prop_order)
    resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
    converter.visit(resolved, "")
    return str(converter.format_grammar())
