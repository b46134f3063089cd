"""The compiled-grammar safety net refuses what llama.cpp's parser would refuse (and dump) or crash on."""

from __future__ import annotations

import pytest
from llama_cpp.llama_grammar import JSON_GBNF

from slipstream.engine.prepare.grammar import schema_grammar
from slipstream.engine.prepare.grammar_limits import GrammarRefused, measure
from slipstream.errors import InvalidRequest


@pytest.mark.parametrize(
    ("gbnf", "why"),
    [
        ('root ::= "\\q"', "unknown escape"),
        ('root ::= "\\x4"', "unknown escape"),
        ('root ::= ("a"', "unbalanced"),
        ('root ::= "a")', "unbalanced"),
        ("root ::= b", "undefined rule 'b'"),
        ('x ::= "a"', "no root rule"),
        ('root ::= "a\0"', "NUL"),
        ('root ::= ? "a"', "without an item"),
        ('root ::= "a"{3000}', "more than 1000"),
        ('root ::= "a', "unterminated"),
        ("root ::= <[42]>", "unexpected '<'"),
        ("root ::= " + '("a" ' * 100 + ")?" * 100, "nest more than 64"),
    ],
)
def test_grammars_llama_cpp_would_refuse_are_refused(gbnf: str, why: str) -> None:
    with pytest.raises(GrammarRefused, match=why):
        measure(gbnf)


def test_the_repetition_guard_counts_the_rules_a_group_generates() -> None:
    group = "(" + " ".join(f'"{i}"?' for i in range(40)) + ")"  # 1 + 40 generated rules
    measure(f"root ::= {group}{{20}}")  # 41 * 20 = 820
    with pytest.raises(GrammarRefused, match="expands to 1025 rules"):
        measure(f"root ::= {group}{{25}}")


def test_stock_grammars_pass() -> None:
    measure(str(JSON_GBNF))
    measure(schema_grammar({"type": "object", "properties": {"a": {"type": "string", "format": "date-time"}}}))


def test_length_bounds_compile_to_flat_chains() -> None:
    gbnf = schema_grammar({"type": "array", "items": {"type": "string", "maxLength": 4096}, "maxItems": 4096})
    measure(gbnf)
    assert "(char" not in gbnf and gbnf.count("::=") > 8192


def test_a_pattern_repetition_bomb_is_a_400_naming_the_schema() -> None:
    with pytest.raises(InvalidRequest) as exc:
        schema_grammar({"type": "string", "pattern": "^a{0,5000}$"})
    assert exc.value.param == "response_format.json_schema.schema" and "nest more than 64" in exc.value.message
