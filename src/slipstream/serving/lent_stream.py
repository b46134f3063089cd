"""A stream whose body a local runner writes straight to the client's socket.

The gateway sends the HTTP head, lends the socket once the head is in the kernel, follows
the runner's usage reports, and writes the end itself: ``[DONE]`` after the usage row is
committed, or an error event if the runner died. The client sees the same bytes the relay
would have sent (``ChunkShaper``'s rules are applied by the runner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from slipstream.errors import SlipstreamError, UpstreamError
from slipstream.http.lending import reset_connection, write_timeout
from slipstream.http.sse import DONE, SSE_HEADERS, encode_event
from slipstream.providers.base import LentStream
from slipstream.serving.metering import UsageMeter

log = logging.getLogger(__name__)
CANCEL_REPORT_S = 2.0  # how long a cancelled stream waits for the runner's final count


class LentStreamResponse(Response):
    def __init__(self, lent: LentStream, transport: asyncio.Transport, fd: int, meter: UsageMeter) -> None:
        super().__init__(headers=SSE_HEADERS, media_type="text/event-stream")
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # chunked, open-ended
        self._lent = lent
        self._transport = transport
        self._fd = fd
        self._meter = meter
        self._mid_chunk = False  # the runner left a chunk half-written (a slow client's full socket)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        meter = self._meter
        write_timeout_s = write_timeout(scope)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not await _head_flushed(self._transport, write_timeout_s):
                meter.finish("cancelled", 499, "client_disconnected")
                reset_connection(self._transport)
                return
            self._lent.lend(self._fd, write_timeout_s)
            await self._follow(receive, send)
        except BaseException as exc:
            await meter.settle_failure(exc)
            if not isinstance(exc, SlipstreamError):
                raise
            if self._mid_chunk:  # an event now would land inside the runner's chunk: end the connection
                self._transport.close()
                await asyncio.sleep(0)  # let uvicorn see the connection go before the app returns
                return
            await _end(send, encode_event(exc.envelope()))
        finally:
            self._lent.close()

    async def _follow(self, receive: Receive, send: Send) -> None:
        meter = self._meter
        reports = asyncio.ensure_future(self._read_reports())
        gone = asyncio.ensure_future(_client_left(receive))
        try:
            await asyncio.wait({reports, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not reports.done():
                self._lent.client_left()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reports), CANCEL_REPORT_S)
                meter.finish("cancelled", 499, "client_disconnected")
                return
            done = reports.result()
        finally:
            for task in (reports, gone):
                task.cancel()
        if done is None:
            raise UpstreamError("The model backend failed mid-stream.")
        meter.timings_from(done.get("first_at"), done.get("itl") or [])
        outcome = done.get("done")
        if outcome == "ok":
            await meter.settle("ok", 200)  # [DONE] only once the row is committed
            await _end(send, DONE)
        elif outcome == "cancelled":  # the runner could no longer write: the client left or stopped reading
            meter.finish("cancelled", 499, "client_disconnected")
            reset_connection(self._transport)  # the response cannot be ended, and a stalled client is not waited for
            await asyncio.sleep(0)  # let uvicorn see the connection go before the app returns
        else:
            log.warning("lent stream failed in the runner: %s", done.get("message"))
            failure = SlipstreamError("The server failed while streaming.")
            await meter.settle_failure(failure)
            await _end(send, encode_event(failure.envelope()))

    async def _read_reports(self) -> dict[str, Any] | None:
        """Usage as the runner reports it; returns its ``done`` report, or None if it died."""
        while True:
            try:
                report = await self._lent.next_report()
            except ValueError:  # not a JSON line: treated like a runner that died
                log.exception("unreadable report from a runner")
                return None
            if report is None:
                return None
            self._meter.observe(report.get("usage"))
            self._mid_chunk = bool(report.get("blocked", self._mid_chunk))
            if "done" in report:
                return report


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
