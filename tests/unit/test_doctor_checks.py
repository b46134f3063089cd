"""The doctor's judgements that this machine cannot show: an AMX build, an AMX CPU, a crashed probe."""

from __future__ import annotations

from slipstream.cpu import CpuInfo, parse_cpuinfo
from slipstream.diagnostics.engine import EngineFacts, check_engine, parse_system_info
from slipstream.diagnostics.report import Check, Report, Status

AMX_BUILD = "CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
PLAIN_BUILD = "CPU : SSE3 = 1 | AVX2 = 1 | FMA = 1 | "
AMX_CPU = CpuInfo("x86_64", "Xeon", frozenset({"avx2", "avx512f", "amx_tile", "amx_int8"}))
PLAIN_CPU = CpuInfo("x86_64", "EPYC", frozenset({"avx2", "fma"}))


def built(system_info: str) -> EngineFacts:
    return EngineFacts(system_info, features=parse_system_info(system_info))


def test_system_info_is_split_into_backends_and_features() -> None:
    assert parse_system_info(AMX_BUILD) == {"CPU": ["SSE3", "AVX512", "AMX_INT8", "OPENMP", "REPACK"]}
    assert parse_system_info("CPU : A = 1 | B = 0 | Metal : C = 1 | ") == {"CPU": ["A", "B=0"], "Metal": ["C"]}
    assert parse_system_info("") == {}


def test_cpuinfo_flags_model_and_amx() -> None:
    cpu = parse_cpuinfo(
        "processor\t: 0\nmodel name\t: Xeon Max\nflags\t\t: fpu avx2 sse4_2 amx_tile avx512f\n", "x86_64"
    )
    assert cpu.model == "Xeon Max" and cpu.amx
    assert cpu.instruction_sets == ["sse4_2", "avx2", "amx_tile", "avx512f"]
    assert not PLAIN_CPU.amx


def test_an_amx_build_on_an_amx_cpu_fails_with_the_cure() -> None:
    check = check_engine(built(AMX_BUILD), AMX_CPU)
    assert check.status is Status.fail and check.facts["amx"] is True
    assert check.detail == (
        "built with AMX on a CPU that advertises AMX: its kernels can crash with SIGSEGV; rebuild with `make clean run`"
    )
    assert check_engine(built(AMX_BUILD), PLAIN_CPU).status is Status.warn
    plain = check_engine(built(PLAIN_BUILD), AMX_CPU)
    assert (plain.status, plain.detail) == (Status.ok, "compiled for SSE3 AVX2 FMA · no AMX")


def test_a_crashed_probe_fails_by_its_signal() -> None:
    facts = EngineFacts(error="llama.cpp crashed with SIGILL (signal 4) while reporting its build", signal="SIGILL")
    check = check_engine(facts, PLAIN_CPU)
    assert check.status is Status.fail
    assert check.detail == (
        "llama.cpp crashed with SIGILL (signal 4) while reporting its build; rebuild with `make clean run`"
    )


def test_the_report_is_as_bad_as_its_worst_check() -> None:
    report = Report({"a": Check("a", Status.ok, "")}, [Check("model m", Status.warn, "")])
    assert report.status is Status.warn
    report.models.append(Check("model n", Status.fail, "gone", {"id": "n"}))
    assert report.status is Status.fail
    assert report.as_json()["models"][1] == {"status": "fail", "detail": "gone", "id": "n"}
