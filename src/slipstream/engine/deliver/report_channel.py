"""The runner's reports to the gateway about a lent stream, written from either thread, in order.

A usage report must reach the gateway before the tokens it counts reach the client: if the
runner then dies, the gateway bills what the client saw. So the engine thread writes a report
itself, just before it writes the chunk, instead of asking the loop to (the loop can lag a
decode step behind). A line that does not fit in the socket is finished by the loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from slipstream.protocol.handoff import encode_line


class ReportChannel:
    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._lock = threading.Lock()
        self._pending = bytearray()  # under ``_lock``
        self._drained: asyncio.Future[None] | None = None  # loop thread only
        self.broken = False

    def send(self, message: dict[str, Any]) -> None:
        """Any thread; never blocks. Lines keep the order of the calls."""
        data = encode_line(message)
        with self._lock:
            if self.broken:
                return
            if self._pending:
                self._pending += data
                return
            try:
                written = self._sock.send(data)
            except BlockingIOError:
                written = 0
            except OSError:
                self.broken = True
                return
            if written < len(data):
                self._pending += data[written:]
                self._loop.call_soon_threadsafe(self._watch)

    async def drain(self) -> None:
        """Loop thread: until every line is in the kernel (or the gateway is gone)."""
        while True:
            with self._lock:
                if not self._pending or self.broken:
                    return
            self._drained = self._loop.create_future()
            await self._drained

    def _watch(self) -> None:
        self._loop.add_writer(self._sock.fileno(), self._flush)

    def _flush(self) -> None:
        with self._lock:
            try:
                written = self._sock.send(self._pending)
            except BlockingIOError:
                return
            except OSError:
                self.broken = True
                written = len(self._pending)
            del self._pending[:written]
            if self._pending:
                return
        self._loop.remove_writer(self._sock.fileno())
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
