"""Run as ``python -m slipstream.diagnostics.engine_probe``: print llama.cpp's build facts as JSON.

A separate process because loading llama.cpp can crash (SIGILL, SIGSEGV) on a build that does
not fit the CPU, and doctor must survive that to report it.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any


def _text(function: Any) -> str:
    function.restype = ctypes.c_char_p
    function.argtypes = []
    value = function()
    return value.decode("utf-8", "replace") if value else "unknown"


def main() -> int:
    import llama_cpp
    from llama_cpp import _ggml

    llama_cpp.llama_backend_init()
    facts = {
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace"),
        # ggml carries llama.cpp's version and commit; older builds lack these functions
        "ggml_version": _text(_ggml.libggml.ggml_version) if hasattr(_ggml.libggml, "ggml_version") else "unknown",
        "ggml_commit": _text(_ggml.libggml.ggml_commit) if hasattr(_ggml.libggml, "ggml_commit") else "unknown",
    }
    sys.stdout.write(json.dumps(facts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
