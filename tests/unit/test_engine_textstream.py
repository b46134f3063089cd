"""Stop strings never leak, even split across tokens; UTF-8 split across tokens is never broken."""

from __future__ import annotations

from slipstream.engine.core.textstream import TextStream


def run(pieces: list[bytes], stops: tuple[str, ...]) -> tuple[list[str], bool, str]:
    ts = TextStream(stops)
    out = []
    for p in pieces:
        text, stopped = ts.push(p)
        out.append(text)
        if stopped:
            return out, True, ""
    return out, False, ts.flush()


def test_stop_split_across_pieces_is_never_emitted() -> None:
    out, stopped, _rest = run([b"Hello wo", b"rl", b"d! more"], ("world",))
    assert stopped and "".join(out) == "Hello "
    assert all("w" not in chunk for chunk in out[1:])


def test_partial_match_is_released_when_it_stops_matching() -> None:
    out, stopped, rest = run([b"a wor", b"m"], ("world",))
    assert not stopped and out == ["a ", "worm"] and rest == ""


def test_held_text_is_flushed_at_the_end() -> None:
    out, _stopped, rest = run([b"say wor"], ("world",))
    assert out == ["say "] and rest == "wor"


def test_earliest_of_several_stops_wins() -> None:
    out, stopped, _ = run([b"one two three"], ("three", "two"))
    assert stopped and out == ["one "]


def test_multibyte_character_split_over_tokens() -> None:
    euro = "€".encode()
    out, _stopped, rest = run([b"price: " + euro[:1], euro[1:2], euro[2:] + b"5"], ())
    assert out == ["price: ", "", "€5"] and rest == ""


def test_invalid_bytes_become_replacement_not_crash() -> None:
    out, _, rest = run([b"\xff", b"ok"], ())
    assert "".join(out) + rest == "\ufffdok"
