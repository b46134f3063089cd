"""The runner's loop-side writes to a lent client socket: HTTP/1.1 chunks, buffered when it is full.

The engine thread writes most chunks itself (``DirectWriter``); what it cannot write, and the
first and last events of a stream, come through here, so the loop's flow control applies.
A client that takes no byte for ``write_timeout_s`` is treated as gone (``ClientStalled``):
otherwise it would hold a slot, and the gateway's lease on this runner, for as long as it likes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from slipstream.engine.deliver.direct_stream import RawBytes

_HIGH_WATER = 256 * 1024


class ClientGone(ConnectionError):
    """The lent socket failed: the client closed or reset its connection."""


class ClientStalled(TimeoutError):
    """The client took no byte of the stream for the write timeout."""


class LentSocket:
    """The loop thread's writes to the client's socket: framed chunks, buffered when it is full."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_blocked: Callable[[bool], None] | None = None,
        write_timeout_s: float | None = None,
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._on_blocked = on_blocked  # told when a chunk is left half-written, and when it is whole again
        self._write_timeout_s = write_timeout_s  # None: wait for the client for ever
        self._pending = bytearray()
        self._drained: asyncio.Future[None] | None = None
        self._error: OSError | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._progress_at = 0.0  # when the client last took bytes, while some are pending

    async def write(self, data: bytes) -> None:
        self._send(b"%x\r\n%b\r\n" % (len(data), data))
        if len(self._pending) > _HIGH_WATER:
            await self.flush()

    def write_raw(self, data: RawBytes) -> None:
        self._send(bytes(data))

    def idle(self) -> bool:
        return not self._pending and self._error is None

    async def flush(self) -> None:
        """Wait until every byte is in the kernel; raises ``ClientGone`` if it never will be."""
        while self._pending and self._error is None:
            self._drained = self._loop.create_future()
            await self._drained
        if self._error is not None:
            raise ClientGone(str(self._error))

    def _send(self, data: bytes) -> None:
        if self._error is not None:
            raise ClientGone(str(self._error))
        if self._pending:
            self._pending += data
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._error = exc
            raise ClientGone(str(exc)) from exc
        if written < len(data):
            self._pending += data[written:]
            self._loop.add_writer(self._fd, self._on_writable)
            self._progress_at = self._loop.time()
            self._arm_stall_timer(self._write_timeout_s)
            if self._on_blocked is not None:
                self._on_blocked(True)

    def _on_writable(self) -> None:
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._error = exc
            written = len(self._pending)
        del self._pending[:written]
        self._progress_at = self._loop.time()
        if not self._pending:
            self._loop.remove_writer(self._fd)
            self._cancel_stall_timer()
            if self._on_blocked is not None and self._error is None:
                self._on_blocked(False)
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    def _arm_stall_timer(self, delay: float | None) -> None:
        if delay is not None and self._stall_timer is None:
            self._stall_timer = self._loop.call_later(delay, self._check_stalled)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _check_stalled(self) -> None:
        """Bytes pending since the last progress for the whole write timeout: give up on the client."""
        self._stall_timer = None
        if not self._pending or self._error is not None or self._write_timeout_s is None:
            return
        quiet = self._loop.time() - self._progress_at
        if quiet < self._write_timeout_s:
            self._arm_stall_timer(self._write_timeout_s - quiet)
            return
        self._error = ClientStalled(f"the client read nothing for {self._write_timeout_s:g}s")
        self._loop.remove_writer(self._fd)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def close(self) -> None:
        self._cancel_stall_timer()
        if self._fd >= 0:
            if self._pending:
                self._loop.remove_writer(self._fd)
                self._error = self._error or ConnectionAbortedError("closed with unwritten bytes")
            os.close(self._fd)
            self._fd = -1
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
