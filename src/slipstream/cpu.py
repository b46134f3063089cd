"""The CPU's instruction sets as Linux reports them, and whether it advertises AMX.

AMX matters because llama.cpp's AMX kernels crash with SIGSEGV on some CPUs and hypervisors
that advertise it; the engine is therefore always built without them (scripts/engine_cmake_args.py,
which parses the same file on its own because it runs before the venv exists). The runner's
crash messages and ``slipstream doctor`` both read the CPU through this module.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
# The /proc/cpuinfo flags ggml can use (x86-64 and arm64), in the order people expect to read them.
_INTERESTING = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "asimd", "asimddp", "i8mm", "sve", "sve2")
_FAMILIES = ("avx512", "amx_")


@dataclass(frozen=True, slots=True)
class CpuInfo:
    machine: str
    model: str
    flags: frozenset[str]

    @property
    def instruction_sets(self) -> list[str]:
        families = sorted(f for f in self.flags if f.startswith(_FAMILIES))
        return [f for f in _INTERESTING if f in self.flags] + families

    @property
    def amx(self) -> bool:
        return bool(self.flags & AMX_FLAGS)


def parse_cpuinfo(text: str, machine: str) -> CpuInfo:
    """The first processor's flags (x86 ``flags``, arm64 ``Features``) and model name."""
    flags: frozenset[str] = frozenset()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        elif key in ("model name", "Model", "CPU part") and not model:
            model = value.strip()
    return CpuInfo(machine, model, flags)


def read_cpu(cpuinfo: Path = CPUINFO) -> CpuInfo | None:
    """None where the file cannot be read: unknown, which is not the same as no flags."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    return parse_cpuinfo(text, platform.machine())


@functools.cache
def cpu_has_amx(cpuinfo: Path = CPUINFO) -> bool:
    cpu = read_cpu(cpuinfo)
    return cpu is not None and cpu.amx
