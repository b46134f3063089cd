"""The HTTP response of a stream whose body a local runner writes straight to the client's socket.

It sends the head, lends the socket once the head is in the kernel, follows the runner's
reports, and writes the end that ``serving/lent_stream.py`` decides on: ``[DONE]`` after the
usage row is committed, or an error event if the runner died.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from slipstream.errors import SlipstreamError
from slipstream.http.lending import reset_connection, write_timeout
from slipstream.protocol.sse import SSE_HEADERS
from slipstream.serving.lent_stream import LentStreamCall

CANCEL_REPORT_S = 2.0  # how long a cancelled stream waits for the runner's final count


class LentStreamResponse(Response):
    def __init__(self, call: LentStreamCall, transport: asyncio.Transport, fd: int) -> None:
        super().__init__(headers=SSE_HEADERS, media_type="text/event-stream")
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # chunked, open-ended
        self._call = call
        self._transport = transport
        self._fd = fd

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self._call
        write_timeout_s = write_timeout(scope)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not await _head_flushed(self._transport, write_timeout_s):
                call.client_left()
                reset_connection(self._transport)
                return
            call.lent.lend(self._fd, write_timeout_s)
            left, done = await self._follow(receive)
            if left:
                return
            last = await call.last_bytes(done)
            if last is None:
                reset_connection(self._transport)
                await asyncio.sleep(0)  # let uvicorn see the connection go before the app returns
                return
            await _end(send, last)
        except BaseException as exc:
            last = await call.settle_failure(exc)
            if not isinstance(exc, SlipstreamError):
                raise
            if last is None:  # an event now would land inside the runner's chunk: end the connection
                self._transport.close()
                await asyncio.sleep(0)  # let uvicorn see the connection go before the app returns
                return
            await _end(send, last)
        finally:
            call.lent.close()

    async def _follow(self, receive: Receive) -> tuple[bool, dict[str, Any] | None]:
        """(the client left, the runner's ``done`` report or None if it died)."""
        call = self._call
        reports = asyncio.ensure_future(call.read_reports())
        gone = asyncio.ensure_future(_client_left(receive))
        try:
            await asyncio.wait({reports, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not reports.done():
                call.lent.client_left()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reports), CANCEL_REPORT_S)
                call.client_left()
                return True, None
            return False, reports.result()
        finally:
            for task in (reports, gone):
                task.cancel()


async def _head_flushed(transport: asyncio.Transport, timeout_s: float) -> bool:
    """The runner must not write before the head is in the kernel, or the bytes would interleave."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while transport.get_write_buffer_size() > 0:
        if transport.is_closing() or loop.time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return not transport.is_closing()


async def _client_left(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _end(send: Send, last: bytes) -> None:
    await send({"type": "http.response.body", "body": last, "more_body": False})
