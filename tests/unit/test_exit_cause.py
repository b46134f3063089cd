"""How a runner's death is put into words: signal names, the AMX hint, the runner's last stderr lines."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from slipstream.cpu import cpu_has_amx, read_cpu
from slipstream.runners.exit_cause import (
    describe_exit,
    describe_serving_exit,
    describe_start_failure,
    signal_label,
)
from slipstream.runners.stderr_tail import KEEP_BYTES, StderrTail


def test_negative_return_codes_are_named_signals() -> None:
    assert signal_label(-11) == "SIGSEGV (signal 11)"
    assert signal_label(-9) == "SIGKILL (signal 9)"
    assert signal_label(-99) == "signal 99"
    assert signal_label(0) is None and signal_label(2) is None


def test_a_crash_on_an_amx_cpu_says_how_to_rebuild() -> None:
    assert describe_start_failure("smollm2-135m-instruct", -11, amx=True) == (
        "The local engine crashed with SIGSEGV (signal 11) while loading smollm2-135m-instruct; "
        "this CPU advertises AMX, rebuild with `make clean run`."
    )


def test_a_crash_elsewhere_points_at_doctor() -> None:
    assert describe_start_failure("m", -4, amx=False) == (
        "The local engine crashed with SIGILL (signal 4) while loading m; "
        "run `slipstream doctor` to check the engine build."
    )


def test_sigkill_suggests_memory_and_never_the_amx_rebuild() -> None:
    assert describe_start_failure("m", -9, amx=True) == (
        "The local engine was stopped by SIGKILL (signal 9) while loading m; "
        "it may have run out of memory; run `slipstream doctor` to check the engine build."
    )


def test_a_plain_exit_quotes_the_last_stderr_lines() -> None:
    tail = ["loading...", "slipstream runner: cannot load model /x.gguf: not a valid GGUF?"]
    assert describe_start_failure("m", 2, tail, amx=True) == (
        "The local engine exited with status 2 while loading m "
        "(loading... | slipstream runner: cannot load model /x.gguf: not a valid GGUF?); "
        "run `slipstream doctor` to check the engine build."
    )
    assert describe_start_failure("m", 1, [], amx=False) == (
        "The local engine exited with status 1 while loading m; run `slipstream doctor` to check the engine build."
    )


def test_a_runner_dying_under_a_request_is_named_too() -> None:
    assert describe_serving_exit("twin", -11, amx=True) == (
        "The local engine crashed with SIGSEGV (signal 11) while serving twin; "
        "this CPU advertises AMX, rebuild with `make clean run`."
    )
    assert describe_serving_exit("twin", -11, amx=False) == (
        "The local engine crashed with SIGSEGV (signal 11) while serving twin; "
        "run `slipstream doctor` to check the engine build."
    )
    assert describe_serving_exit("twin", 1, amx=True) == (
        "The local engine exited with status 1 while serving twin; run `slipstream doctor` to check the engine build."
    )


def test_describe_exit_for_the_log() -> None:
    assert describe_exit(-11) == "crashed with SIGSEGV (signal 11)"
    assert describe_exit(-15) == "was stopped by SIGTERM (signal 15)"
    assert describe_exit(0) == "exited with status 0"


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16 amx_tile amx_int8\n\nprocessor\t: 1\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_amx(amx) is True
    assert cpu_has_amx(plain) is False
    assert cpu_has_amx(tmp_path / "missing") is False
    cpu = read_cpu(plain)
    assert cpu is not None and cpu.flags == frozenset({"fpu", "sse", "avx2", "avx512f"})


async def test_stderr_is_forwarded_whole_and_its_tail_kept() -> None:
    reader = asyncio.StreamReader()
    sink = io.BytesIO()
    tail = StderrTail(reader, sink)
    noise = b"x" * (KEEP_BYTES * 3) + b"\n"
    reader.feed_data(noise + b"first line\n\n  \nlast line\n")
    reader.feed_eof()
    await tail.finished(5)
    assert sink.getvalue() == noise + b"first line\n\n  \nlast line\n"
    assert tail.lines() == ["first line", "last line"]
    assert tail.lines(1) == ["last line"]
