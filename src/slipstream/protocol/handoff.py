"""The socket hand-off protocol between the gateway and a runner, over a private Unix socket.

Through the gateway every streamed token used to cross one more process: the runner wrote it
to the gateway, whose event loop read it and wrote it again to the client, about 340 us of
CPU per token on the cores the compute threads need. For a stream of a loaded local model the
gateway instead lends the client's connection to the runner (``SCM_RIGHTS``): the runner
writes the response body, the gateway keeps the HTTP head, the metering and the end of the
response. One connection carries one request:

1. gateway → runner: a 4-byte big-endian length, then JSON ``{"request", "id", "created", "model"}``;
2. runner → gateway: one line, ``{"accepted": true}`` or ``{"status", "error", "retry_after"}``;
   then, once the first output exists, ``{"ready": true}``, or ``{"done": "error", "message"}``
   (so a failure before any output still gets its HTTP status, as on the relay);
3. gateway → runner: one byte, ``b"G"``, carrying the client's socket once the head is out
   (closing instead means the client left), then the write timeout in seconds as an 8-byte
   big-endian double: the runner gives up on a client that takes no byte for that long;
4. runner → gateway: lines ``{"usage"}`` while it streams, ``{"blocked": true|false}`` when a
   chunk is left half-written in a full socket and when it is whole again, then ``{"done": "ok" |
   "error" | "cancelled", "usage", "first_at", "itl", "message"}`` once its last byte is written
   (``cancelled``: the client left, or stopped reading for the write timeout);
5. the gateway shuts its write side when the client leaves: the runner cancels the job and
   still reports ``done``.

Lines are JSON objects ending in ``\\n``; times are ``time.monotonic()`` seconds, one clock for
both processes.
"""

from __future__ import annotations

import array
import asyncio
import socket
import struct
from typing import Any

import orjson

GO = b"G"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")
_TIMEOUT = struct.Struct(">d")


def encode_request(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return _LENGTH.pack(len(body)) + body


def encode_line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


async def read_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes, or fewer if the peer closed first."""
    parts: list[bytes] = []
    while n > 0:
        part = await loop.sock_recv(sock, min(n, 1 << 20))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


async def read_request(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> dict[str, Any] | None:
    """The gateway's request, or None if it went away before sending all of it."""
    head = await read_exact(loop, sock, _LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"hand-off request of {size} bytes")
    body = await read_exact(loop, sock, size)
    if len(body) < size:
        return None
    message: dict[str, Any] = orjson.loads(body)
    return message


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def receive_socket(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[int, float] | None:
    """Step 3 on the runner: the lent descriptor and the write timeout, or None if the gateway
    closed instead."""
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
        except (BlockingIOError, InterruptedError):
            await _readable(loop, sock)
            continue
        if data == GO and len(fds) == 1:
            timeout = await read_exact(loop, sock, _TIMEOUT.size)
            if len(timeout) == _TIMEOUT.size:
                return fds[0], _TIMEOUT.unpack(timeout)[0]
        for fd in fds:  # anything else is the gateway giving up: nothing may leak
            socket.close(fd)
        return None


def lend_socket(sock: socket.socket, fd: int, write_timeout_s: float) -> None:
    """Step 3 on the gateway. Nine bytes on an idle socket: it cannot block."""
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
    sock.sendmsg([GO + _TIMEOUT.pack(write_timeout_s)], rights)


class LineReader:
    """JSON lines from a non-blocking socket, read through the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._buffer = b""

    async def next(self) -> dict[str, Any] | None:
        """The next message, or None once the peer closed (a crash if no ``done`` came first)."""
        while b"\n" not in self._buffer:
            try:
                part = await self._loop.sock_recv(self._sock, 65536)
            except ConnectionError:
                part = b""
            if not part:
                return None
            self._buffer += part
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = orjson.loads(line)
        return message
