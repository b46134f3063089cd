"""Doctor's CPU row: the instruction sets ggml can use, and whether AMX is advertised (``slipstream.cpu``)."""

from __future__ import annotations

from slipstream.cpu import CPUINFO, CpuInfo
from slipstream.diagnostics.report import Check, Status


def check_cpu(cpu: CpuInfo | None) -> Check:
    if cpu is None:
        return Check("cpu", Status.warn, f"cannot read {CPUINFO}: instruction sets unknown", {"amx": None})
    amx = "AMX advertised (the engine must be built without it)" if cpu.amx else "AMX not advertised"
    sets = " ".join(cpu.instruction_sets) or "none that ggml uses"
    facts = {"machine": cpu.machine, "model": cpu.model, "instruction_sets": cpu.instruction_sets, "amx": cpu.amx}
    return Check("cpu", Status.ok, f"{cpu.machine} {cpu.model}: {sets} · {amx}", facts)
