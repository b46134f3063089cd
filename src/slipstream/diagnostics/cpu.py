"""The CPU's instruction sets as Linux reports them, and whether it advertises AMX.

AMX matters because llama.cpp's AMX kernels crash with SIGSEGV on some CPUs and hypervisors
that advertise it; the engine is therefore always built without them (scripts/engine_cmake_args.py).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from slipstream.diagnostics.report import Check, Status

CPUINFO = Path("/proc/cpuinfo")
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
        return any(f.startswith("amx_") for f in self.flags)


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


def read_cpu() -> CpuInfo | None:
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    return parse_cpuinfo(text, platform.machine())


def check_cpu(cpu: CpuInfo | None) -> Check:
    if cpu is None:
        return Check("cpu", Status.warn, f"cannot read {CPUINFO}: instruction sets unknown", {"amx": None})
    amx = "AMX advertised (the engine must be built without it)" if cpu.amx else "AMX not advertised"
    sets = " ".join(cpu.instruction_sets) or "none that ggml uses"
    facts = {"machine": cpu.machine, "model": cpu.model, "instruction_sets": cpu.instruction_sets, "amx": cpu.amx}
    return Check("cpu", Status.ok, f"{cpu.machine} {cpu.model}: {sets} · {amx}", facts)
