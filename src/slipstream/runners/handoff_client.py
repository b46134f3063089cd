"""The gateway's side of the socket hand-off (protocol: ``protocol/handoff.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from slipstream.errors import ModelUnavailable, SlipstreamError, UpstreamError, from_envelope
from slipstream.protocol.handoff import LineReader, encode_request, lend_socket


class HandoffConnection:
    """One request lent to a runner. ``close`` also releases the runner's lease."""

    def __init__(self, sock: socket.socket, release: Callable[[], None]) -> None:
        self._sock = sock
        self._release: Callable[[], None] | None = release
        self._lines = LineReader(asyncio.get_running_loop(), sock)

    @classmethod
    async def open(cls, path: str, message: dict[str, Any], release: Callable[[], None]) -> HandoffConnection | None:
        """Send the request and wait until the runner accepts it.

        Returns None if the runner cannot be reached (the caller falls back to the HTTP path,
        which restarts a dead runner); raises the runner's own error if it refused the request."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn = cls(sock, release)
        try:
            await loop.sock_connect(sock, path)
            await loop.sock_sendall(sock, encode_request(message))
            answer = await conn._lines.next()
        except OSError:
            conn.close()
            return None
        except BaseException:
            conn.close()
            raise
        if answer is None:
            conn.close()
            return None
        if not answer.get("accepted"):
            conn.close()
            raise from_envelope(int(answer.get("status") or 502), answer.get("error"),
                                retry_after=answer.get("retry_after"))  # fmt: skip
        return conn

    async def wait_ready(self) -> None:
        """Until the runner has output; raises the failure a client should see as a status instead."""
        report = await self._lines.next()
        if report is None:
            raise ModelUnavailable("The model runner stopped before the stream began; retry.", retry_after=1)
        if not report.get("ready"):
            raise SlipstreamError(f"The model runner failed: {report.get('message')}")

    def lend(self, fd: int, write_timeout_s: float) -> None:
        try:
            lend_socket(self._sock, fd, write_timeout_s)
        except OSError as exc:
            raise UpstreamError(f"The model backend could not take the stream: {exc!r}") from exc

    async def next_report(self) -> dict[str, Any] | None:
        """The runner's next report; None if it closed without ``done`` (it crashed)."""
        return await self._lines.next()

    def client_left(self) -> None:
        """The runner cancels the job, and still sends ``done`` with the usage so far."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()
        if self._release is not None:
            release, self._release = self._release, None
            release()
