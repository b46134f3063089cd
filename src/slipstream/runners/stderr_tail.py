"""A runner's stderr, forwarded to the gateway's own stderr with its last few KiB kept.

The runner's logs stay where operators expect them (the gateway's stderr), and when a runner
exits before it is ready, the gateway can quote its last words in the error the client gets.
Reads fixed-size chunks, not lines, so a runaway line cannot exhaust the reader's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import BinaryIO

KEEP_BYTES = 4096
CHUNK = 65536


def _gateway_stderr() -> BinaryIO | None:
    return getattr(sys.stderr, "buffer", None)


class StderrTail:
    """Pumps one process's stderr until EOF; ``lines()`` are the last few it wrote."""

    def __init__(self, stream: asyncio.StreamReader, sink: BinaryIO | None = None) -> None:
        self._stream = stream
        self._sink = sink
        self._tail = bytearray()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        sink = self._sink or _gateway_stderr()
        while chunk := await self._stream.read(CHUNK):
            self._tail += chunk
            del self._tail[:-KEEP_BYTES]
            if sink is not None:
                with contextlib.suppress(OSError, ValueError):  # a closed or full stderr must not stop the pump
                    sink.write(chunk)
                    sink.flush()

    async def finished(self, timeout_s: float) -> None:
        """Wait (bounded) until the process closed its stderr, so the tail holds its last words."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)

    def lines(self, n: int = 2) -> list[str]:
        text = self._tail.decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip()][-n:]

    def cancel(self) -> None:
        self._task.cancel()
