"""The safety net under ``schema_limits.py``: a grammar llama.cpp would choke on never reaches it.

llama.cpp parses GBNF recursively (one C++ frame pair per ``(``), so deep nesting overflows the
runner's stack and kills it; and when it refuses a grammar it ``fprintf``s the whole grammar to
stderr, past any log callback. So a compiled grammar is measured here first, mirroring the
parser's own rules (``llama_grammar_parser::parse_sequence`` in ``src/llama-grammar.cpp``):

- its size and number of rules;
- how deeply its groups nest;
- the parser's repetition guard: an operator after an item that generated ``k`` rules, repeated
  ``n`` times, is refused when ``k * n`` reaches 2000 (checked here at half that);
- that it is well-formed: literals and classes close, escapes are known, groups balance,
  every rule is defined (and no ``<token>`` syntax, which the converter never writes).

Whatever passes is accepted by llama.cpp without recursion trouble, so it never dumps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from slipstream.engine.errors import invalid

MAX_GRAMMAR_CHARS = 1_000_000
MAX_RULES = 20_000  # named and generated
MAX_GROUP_DEPTH = 64
REPETITION_LIMIT = 1000  # llama.cpp refuses at 2000 (MAX_REPETITION_THRESHOLD)
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SPACE = re.compile(r"(?:\s|#[^\n]*)*")
_SIMPLE_ESCAPES = frozenset('tnr\\"[]')
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_BRACE = re.compile(r"\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}")


class GrammarRefused(ValueError):
    """The grammar is over a bound (or malformed); the message says which."""


@dataclass
class _Seq:
    """One ``parse_sequence`` in progress: the rules its last item generated (``n_prev_rules``)."""

    n_prev: int = 0  # 0: no item yet (an operator here is a syntax error)
    symbols_at_start: int = 0


@dataclass
class _Scan:
    text: str
    pos: int = 0
    symbols: int = 0  # llama.cpp's symbol_ids.size()
    names: set[str] = field(default_factory=set)
    defined: set[str] = field(default_factory=set)
    frames: list[_Seq] = field(default_factory=list)

    def name(self, name: str) -> None:
        if name not in self.names:
            self.names.add(name)
            self.symbols += 1

    def generate(self, n: int) -> None:
        self.symbols += n
        if self.symbols > MAX_RULES:
            raise GrammarRefused(f"the grammar has more than {MAX_RULES} rules")


def check_gbnf(gbnf: str, param: str) -> None:
    """Raise a 400 naming ``param`` if llama.cpp could refuse or crash on ``gbnf``."""
    try:
        measure(gbnf)
    except GrammarRefused as exc:
        raise invalid(param, f"the JSON schema compiles to a grammar over this server's limits: {exc}") from None


def measure(gbnf: str) -> None:
    if len(gbnf) > MAX_GRAMMAR_CHARS:
        raise GrammarRefused(f"{len(gbnf)} characters, at most {MAX_GRAMMAR_CHARS}")
    if "\0" in gbnf:  # llama.cpp reads a C string: the grammar would end early, unterminated
        raise GrammarRefused("a NUL character")
    s = _Scan(gbnf)
    _skip(s)
    while s.pos < len(gbnf):
        _rule(s)
    if "root" not in s.defined:
        raise GrammarRefused("no root rule")
    if s.names - s.defined:
        raise GrammarRefused(f"undefined rule {sorted(s.names - s.defined)[0]!r}")


def _skip(s: _Scan) -> None:
    m = _SPACE.match(s.text, s.pos)
    s.pos = m.end() if m else s.pos


def _rule(s: _Scan) -> None:
    m = _NAME.match(s.text, s.pos)
    if not m or not s.text.startswith("::=", _after_space(s, m.end())):
        raise GrammarRefused(f"expected a rule definition at offset {s.pos}")
    s.name(m.group())
    s.defined.add(m.group())
    s.pos = _after_space(s, m.end()) + 3
    s.frames = [_Seq(symbols_at_start=s.symbols)]
    while True:
        _skip(s)
        at = s.pos
        if at >= len(s.text) or (len(s.frames) == 1 and _starts_rule(s)):
            break
        _element(s, s.text[at])
    if len(s.frames) != 1:
        raise GrammarRefused("unbalanced parentheses")


def _after_space(s: _Scan, pos: int) -> int:
    m = _SPACE.match(s.text, pos)
    return m.end() if m else pos


def _starts_rule(s: _Scan) -> bool:
    m = _NAME.match(s.text, s.pos)
    return bool(m) and s.text.startswith("::=", _after_space(s, m.end() if m else s.pos))


def _element(s: _Scan, c: str) -> None:
    seq = s.frames[-1]
    if c == '"':
        s.pos = _close(s.text, s.pos + 1, '"')
        seq.n_prev = 1
    elif c == "[":
        s.pos = _close(s.text, s.pos + 1, "]")
        seq.n_prev = 1
    elif c == ".":
        s.pos += 1
        seq.n_prev = 1
    elif c == "(":
        s.pos += 1
        s.generate(1)
        s.frames.append(_Seq(symbols_at_start=s.symbols - 1))
        if len(s.frames) > MAX_GROUP_DEPTH:
            raise GrammarRefused(f"groups nest more than {MAX_GROUP_DEPTH} deep")
    elif c == ")":
        s.pos += 1
        if len(s.frames) == 1:
            raise GrammarRefused("unbalanced parentheses")
        inner = s.frames.pop()
        s.frames[-1].n_prev = max(1, s.symbols - inner.symbols_at_start)
    elif c == "|":
        s.pos += 1
        seq.n_prev = 0
    elif c in "?*+{":
        _repeat(s, seq, c)
    elif m := _NAME.match(s.text, s.pos):
        s.pos = m.end()
        s.name(m.group())
        seq.n_prev = 1
    else:
        raise GrammarRefused(f"unexpected {c!r} at offset {s.pos}")


def _repeat(s: _Scan, seq: _Seq, c: str) -> None:
    if seq.n_prev == 0:
        raise GrammarRefused(f"a repetition without an item at offset {s.pos}")
    if c == "{":
        m = _BRACE.match(s.text, s.pos)
        if not m:
            raise GrammarRefused(f"malformed repetition at offset {s.pos}")
        lo = int(m.group(1))
        hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
        if lo > REPETITION_LIMIT or (hi is not None and hi > REPETITION_LIMIT):
            raise GrammarRefused(f"a repetition of more than {REPETITION_LIMIT}")
        s.pos = m.end()
    else:
        lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[c]
        s.pos += 1
    total = hi if hi else (lo or 1)
    if seq.n_prev * total >= REPETITION_LIMIT:
        raise GrammarRefused(f"a repeated item expands to {seq.n_prev * total} rules, at most {REPETITION_LIMIT}")
    s.generate(1 if hi is None else hi - lo)
    seq.n_prev *= total


def _close(text: str, pos: int, end: str) -> int:
    """The offset just past the ``end`` that closes a literal or class opened before ``pos``;
    escapes as llama.cpp's ``parse_char`` reads them."""
    while pos < len(text):
        ch = text[pos]
        if ch == "\\":
            pos = _escape(text, pos + 1)
        elif ch == end:
            return pos + 1
        else:
            pos += 1
    raise GrammarRefused(f"unterminated {end!r}")


def _escape(text: str, pos: int) -> int:
    kind = text[pos : pos + 1]
    if kind in _SIMPLE_ESCAPES:
        return pos + 1
    digits = _HEX_ESCAPES.get(kind)
    if digits is None or not re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", text[pos + 1 : pos + 1 + digits]):
        raise GrammarRefused(f"unknown escape at offset {pos - 1}")
    return pos + 1 + digits
