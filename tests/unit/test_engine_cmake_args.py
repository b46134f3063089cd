"""The one place that decides how llama.cpp is compiled: never native on x86-64, never AMX."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parents[2] / "scripts" / "engine_cmake_args.py"
SAPPHIRE_RAPIDS = "fpu sse4_2 avx f16c fma bmi2 avx2 avx_vnni avx512f avx512cd avx512vl avx512dq avx512bw " \
    "avx512vbmi avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16"  # fmt: skip
HASWELL = "fpu sse4_2 avx f16c fma bmi2 avx2"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_cmake_args", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def options(machine: str, flags: str) -> dict[str, str]:
    args = load().cmake_args(machine, set(flags.split()))
    return dict(arg.removeprefix("-D").split("=", 1) for arg in args)


def test_an_amx_cpu_gets_every_avx512_kernel_and_no_amx() -> None:
    got = options("x86_64", SAPPHIRE_RAPIDS)
    assert got["GGML_NATIVE"] == "OFF"
    assert all(got[f"GGML_AMX_{kind}"] == "OFF" for kind in ("TILE", "INT8", "BF16"))
    assert all(got[name] == "ON" for name in ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX2"))


def test_a_cpu_without_avx512_keeps_avx2_and_gets_no_avx512() -> None:
    got = options("x86_64", HASWELL)
    assert got["GGML_AVX2"] == got["GGML_FMA"] == got["GGML_F16C"] == "ON"
    assert got["GGML_AVX512"] == got["GGML_AVX512_VNNI"] == got["GGML_AVX_VNNI"] == "OFF"


def test_avx512_needs_all_five_foundation_extensions() -> None:
    assert options("x86_64", HASWELL + " avx512f avx512cd")["GGML_AVX512"] == "OFF"


def test_other_architectures_keep_the_native_default() -> None:
    assert options("aarch64", "fp asimd sve") == {"GGML_NATIVE": "ON"}


def test_the_script_prints_one_line_and_a_cpu_signature() -> None:
    args = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    assert args.count("\n") == 1
    assert "-DGGML_AMX_INT8=OFF" in args or args.strip() == "-DGGML_NATIVE=ON"
    signature = subprocess.run([sys.executable, str(SCRIPT), "--signature"], capture_output=True, text=True).stdout
    assert signature.split()[0] in ("x86_64", "aarch64", "arm64", "AMD64", "amd64")
