"""The engine as built: versions, the CPU features llama.cpp was compiled with, and AMX.

The facts come from a child process (``engine_probe``), so a llama.cpp that crashes on load is
reported by its signal instead of taking doctor down with it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from slipstream.cpu import CpuInfo
from slipstream.diagnostics.report import Check, Status
from slipstream.runners.exit_cause import describe_exit, signal_label

PROBE_TIMEOUT_S = 60.0
REBUILD = "rebuild with `make clean run`"


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """What the probe said, or why it said nothing (``error``)."""

    system_info: str = ""
    ggml_version: str = "unknown"
    ggml_commit: str = "unknown"
    error: str | None = None
    signal: str | None = None
    features: dict[str, list[str]] = field(default_factory=dict)

    @property
    def compiled(self) -> list[str]:
        """Every backend's features, e.g. ``AVX2`` or ``AMX_INT8``."""
        return [name for names in self.features.values() for name in names]

    @property
    def amx(self) -> bool:
        return any(name.startswith("AMX") for name in self.compiled)


def parse_system_info(text: str) -> dict[str, list[str]]:
    """``CPU : SSE3 = 1 | AMX_INT8 = 1 | `` → ``{"CPU": ["SSE3", "AMX_INT8"]}``; a non-1 value is kept."""
    backends: dict[str, list[str]] = {}
    backend = ""
    for part in text.split("|"):
        if " : " in part:
            backend, _, part = part.partition(" : ")
            backend = backend.strip()
        name, sep, value = (s.strip() for s in part.partition("="))
        if not name:
            continue
        feature = name if not sep or value == "1" else f"{name}={value}"
        backends.setdefault(backend, []).append(feature)
    return backends


def probe_engine(timeout_s: float = PROBE_TIMEOUT_S) -> EngineFacts:
    argv = [sys.executable, "-m", "slipstream.diagnostics.engine_probe"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return EngineFacts(error=f"llama.cpp did not report its build within {timeout_s:.0f}s")
    if done.returncode != 0:
        said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        last = f" ({said[-1]})" if said and done.returncode > 0 else ""
        error = f"llama.cpp {describe_exit(done.returncode)} while reporting its build{last}"
        return EngineFacts(error=error, signal=signal_label(done.returncode))
    try:
        facts = json.loads(done.stdout)
    except json.JSONDecodeError:
        return EngineFacts(error=f"the engine probe printed no JSON: {done.stdout[:200]!r}")
    info = str(facts["system_info"])
    return EngineFacts(info, str(facts["ggml_version"]), str(facts["ggml_commit"]), features=parse_system_info(info))


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check_versions(engine: EngineFacts) -> Check:
    llama_python = _installed("llama-cpp-python")
    llama = f"{engine.ggml_version} (commit {engine.ggml_commit})"
    facts = {
        "python": platform.python_version(),
        "slipstream": _installed("slipstream"),
        "llama_cpp_python": llama_python,
        "llama_cpp": llama if engine.error is None else None,
    }
    if llama_python is None:
        return Check("versions", Status.fail, "llama-cpp-python is not installed; run `make run`", facts)
    shown = llama if engine.error is None else "unknown (see engine)"
    detail = f"Python {facts['python']} · llama-cpp-python {llama_python} · llama.cpp/ggml {shown}"
    return Check("versions", Status.ok, detail, facts)


def check_engine(engine: EngineFacts, cpu: CpuInfo | None) -> Check:
    facts = {"features": engine.features, "amx": engine.amx, "system_info": engine.system_info}
    if engine.error is not None:
        facts["signal"] = engine.signal
        advice = f"; {REBUILD}" if engine.signal else ""
        return Check("engine", Status.fail, engine.error + advice, facts)
    compiled = " ".join(engine.compiled) or "no features reported"
    if engine.amx and cpu is not None and cpu.amx:
        detail = f"built with AMX on a CPU that advertises AMX: its kernels can crash with SIGSEGV; {REBUILD}"
        return Check("engine", Status.fail, detail, facts)
    if engine.amx:
        detail = f"built with AMX, which this project never compiles in; {REBUILD} ({compiled})"
        return Check("engine", Status.warn, detail, facts)
    return Check("engine", Status.ok, f"compiled for {compiled} · no AMX", facts)
