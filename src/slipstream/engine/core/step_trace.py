"""A line of JSON per decode step, for profiling the engine on real traffic.

The runner writes one when ``SLIPSTREAM_ENGINE_TRACE`` names a file. Each line says when the step
began (monotonic seconds), how long ``llama_decode`` took, how many sequences decoded, how many
prompt tokens it prefilled for how many requests, how many graphs the batch ran as (runs of
sequence ids, see slots.py) and how many KV stream copies it carried: llama.cpp runs the copies
queued since the last step inside this decode, before the graph, so a step's time includes them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import orjson


class StepTrace:
    def __init__(self, path: Path) -> None:
        self._out: TextIO = path.open("a", buffering=1 << 16)

    def record(self, began: float, decode_s: float, counts: dict[str, int]) -> None:
        """``counts``: decode, prefill_tokens, prefill_seqs, graphs, copies."""
        row = {"t": round(began, 6), "ms": round(decode_s * 1000, 3), **counts, "wall": round(time.time(), 3)}
        self._out.write(orjson.dumps(row).decode() + "\n")

    def close(self) -> None:
        self._out.close()
