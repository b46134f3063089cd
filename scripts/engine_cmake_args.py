#!/usr/bin/env python3
"""Print the CMake arguments that every llama.cpp build of this project uses.

This is the one place that decides how the engine is compiled: `make` (llama-cpp-python)
and `bench/engine.py --build-llama-server` both ask it, so the comparison stays fair.

Why not `-march=native`: on CPUs that advertise AMX (Sapphire Rapids and newer Xeons, and
some hypervisors that expose AMX without granting the XTILEDATA permission), `-march=native`
compiles llama.cpp's AMX kernels, and the first batched matmul dies with SIGSEGV on
`ldtilecfg`. So on x86-64 we turn `GGML_NATIVE` off and switch on, one by one, every
instruction set this CPU reports that ggml can use (AVX-512 included, so machines without
AMX lose nothing), and we always switch AMX off.

Other architectures (arm64, ...) have no AMX and keep llama.cpp's native default.
The output is a single line; `--signature` prints the CPU features the choice was made from,
so a venv built on another CPU is rebuilt.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# ggml option -> the /proc/cpuinfo flags it needs (all of them).
X86_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    # ggml's GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VBMI", ("avx512vbmi",)),
    ("GGML_AVX512_VNNI", ("avx512_vnni",)),
    ("GGML_AVX512_BF16", ("avx512_bf16",)),
)
NEVER = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cmake_args(machine: str, flags: set[str]) -> list[str]:
    if machine not in ("x86_64", "amd64", "AMD64"):
        return ["-DGGML_NATIVE=ON"]
    args = ["-DGGML_NATIVE=OFF"]
    args += [f"-D{name}={'ON' if set(need) <= flags else 'OFF'}" for name, need in X86_OPTIONS]
    args += [f"-D{name}=OFF" for name in NEVER]
    return args


def main(argv: list[str]) -> int:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    flags = cpu_flags(cpuinfo)
    machine = platform.machine()
    if "--signature" in argv:
        print(machine, " ".join(sorted(flags)))
    else:
        print(" ".join(cmake_args(machine, flags)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
