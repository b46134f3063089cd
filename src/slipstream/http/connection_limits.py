"""What one client connection may cost before its key is checked: bounded size, time and count.

httptools puts no bound on a header's size, and uvicorn none on how long a request's headers
or body may take, nor on how long a response may wait for a client that reads nothing, so
without credentials a client could hold connections, memory, and (through a stream) a model
runner. This subclass of the gateway's uvicorn protocol enforces ``http`` settings
(``config.HttpSettings``):

- headers (request line included) beyond ``max_header_bytes``: 431;
- headers not complete ``header_timeout_s`` after the connection opened or the request's first
  byte arrived: 408, or a plain close for a connection that never sent a byte;
- a body not complete ``body_timeout_s`` after its headers: 408 (a plain reset if the response
  has started already);
- a request arriving while ``max_concurrency`` connections are open: 503 with Retry-After;
- a response whose bytes the client stops taking: after ``write_timeout_s`` without progress the
  connection is reset, which cancels (and bills) a relayed stream. Lent streams are written by
  the runner, which is told the same limit (``protocol/handoff.py``).

Answers are OpenAI error envelopes with ``connection: close``. The client's remaining bytes are
then read and dropped for a moment, so that it can finish sending and read the answer (closing
on unread data would make the kernel reset the connection first). A connection abandoned by the
server is reset (``SO_LINGER`` 0), so the kernel frees its unsent bytes at once.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import ClassVar

import orjson
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

from slipstream.config import HttpSettings
from slipstream.errors import HeadersTooLarge, InvalidRequest, RequestTimeout, SlipstreamError, TooManyConnections
from slipstream.http.lending import LIMITS_EXTENSION, TransportExposingProtocol, reset_connection

log = logging.getLogger(__name__)
LINGER_S = 2.0  # after an error answer, how long the client's remaining bytes are read and dropped
DISCARD_LIMIT = 64 * 1024 * 1024  # ... and at most how many
RETRY_AFTER_S = 1


def error_bytes(error: SlipstreamError) -> bytes:
    """A whole HTTP/1.1 error response, for answers written before or outside the app."""
    body = orjson.dumps(error.envelope())
    head = [
        f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name.lower()}: {value}" for name, value in error.headers().items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _overloaded(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The app a request gets beyond ``max_concurrency``: the envelope instead of uvicorn's text."""
    error = TooManyConnections("The server has too many open connections; retry shortly.", retry_after=RETRY_AFTER_S)
    body = orjson.dumps(error.envelope())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class LimitedProtocol(TransportExposingProtocol):
    """uvicorn's httptools protocol with the ``http`` limits; made per settings by ``limited_protocol``."""

    LIMITS: ClassVar[HttpSettings] = HttpSettings()

    _in_head = True  # from the connection (or a request's first byte) until its headers are complete
    _in_body = False  # from the end of the headers until the end of the body
    _head_bytes = 0
    _discarding = False  # an error answer was sent: what the client still sends is dropped
    _discarded = 0
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _write_left = 0  # bytes buffered when the write timer was armed: less at its end is progress
    _write_moved = False  # the buffer drained below its low-water mark meanwhile: progress too
    _linger_timer: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.LIMITS.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._discarded += len(data)
            if self._discarded > DISCARD_LIMIT:
                self._reset()
            return
        if not self._in_head and not self._in_body:
            self._begin_head()  # the first bytes of the next request on a kept-alive connection
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: only bytes fed while the head is still incomplete count, so a
        # body in the same read is never mistaken for headers; a head that completed within one
        # large read is measured in ``on_headers_complete``.
        if self._in_head and self._head_bytes > self.LIMITS.max_header_bytes and not self._discarding:
            limit = self.LIMITS.max_header_bytes
            self._refuse(HeadersTooLarge(f"The request headers are larger than the limit of {limit} bytes."))

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._discarding:
            return
        super().on_message_begin()
        if not self._in_head:
            self._begin_head()  # a pipelined request that began inside the previous read
        limits: dict[object, object] = {"write_timeout_s": self.LIMITS.write_timeout_s}
        self.scope["extensions"][LIMITS_EXTENSION] = limits

    def on_headers_complete(self) -> None:
        if self._discarding:
            return
        self._in_head, self._in_body = False, True
        self._cancel(self._head_timer)
        self._head_timer = None
        limit = self.LIMITS.max_header_bytes
        if self._head_bytes > limit and self._head_size() > limit:  # it came whole in one large read
            self._refuse(HeadersTooLarge(f"The request headers are larger than the limit of {limit} bytes."))
            return
        self._body_timer = self.loop.call_later(self.LIMITS.body_timeout_s, self._body_timed_out)
        if len(self.connections) <= self.LIMITS.max_concurrency:
            super().on_headers_complete()
            return
        log.warning("%d connections open, beyond max_concurrency: a request gets 503", len(self.connections))
        app, self.app = self.app, _overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        if not self._discarding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._discarding:
            return
        self._in_body = False
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    # -- writes ------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_writes()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_moved = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.transport.get_write_buffer_size():
            self._watch_writes()  # the answer's tail still waits for the client

    def _watch_writes(self) -> None:
        if self._write_timer is None:
            self._write_left = self.transport.get_write_buffer_size()
            self._write_moved = False
            self._write_timer = self.loop.call_later(self.LIMITS.write_timeout_s, self._check_writes)

    def _check_writes(self) -> None:
        self._write_timer = None
        left = self.transport.get_write_buffer_size()
        if self.transport.is_closing() or (left == 0 and not self.flow.write_paused):
            return
        if left < self._write_left or self._write_moved:
            self._watch_writes()  # the client took something: another period from here
            return
        log.info("resetting a connection from %s that read nothing for %.1fs (http.write_timeout_s)",
                 self._peer(), self.LIMITS.write_timeout_s)  # fmt: skip
        self._reset()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, as an envelope like every other error."""
        self._refuse(InvalidRequest(msg, code="invalid_http_request"))

    # -- timeouts ----------------------------------------------------------------------------

    def _begin_head(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self._cancel(self._head_timer)
        self._head_timer = self.loop.call_later(self.LIMITS.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request waits behind a response still being sent: its time starts after it
            self._head_timer = self.loop.call_later(self.LIMITS.header_timeout_s, self._head_timed_out)
            return
        if self._head_bytes == 0:
            self.transport.close()  # never said anything: nothing to answer
            return
        timeout = self.LIMITS.header_timeout_s
        self._refuse(RequestTimeout(f"The request headers did not arrive within {timeout:g} s."))

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (a full body buffer, a pipelined request), not the client
            self._body_timer = self.loop.call_later(self.LIMITS.body_timeout_s, self._body_timed_out)
            return
        if self.cycle is not None and self.cycle.response_started:
            self._reset()  # an answer is on its way already: nothing more may be written
            return
        timeout = self.LIMITS.body_timeout_s
        self._refuse(RequestTimeout(f"The request body did not arrive within {timeout:g} s."))

    # -- ending a connection -----------------------------------------------------------------

    def _refuse(self, error: SlipstreamError) -> None:
        """Answer ``error``, stop serving the connection, read and drop what the client still sends."""
        if self.transport.is_closing():
            return
        log.info("refusing a request from %s: %s %s", self._peer(), error.status, error.message)
        self._discarding = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's reads end and its writes are dropped
            cycle.message_event.set()
        self.flow.resume_reading()
        self.transport.write(error_bytes(error))
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client sees the answer end, and its own close ends ours
        self._linger_timer = self.loop.call_later(LINGER_S, self._reset)

    def _reset(self) -> None:
        reset_connection(self.transport)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._write_timer):
            self._cancel(timer)
        self._head_timer = self._body_timer = self._write_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"


def limited_protocol(limits: HttpSettings) -> type[LimitedProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to these limits."""

    class Configured(LimitedProtocol):
        LIMITS = limits

    return Configured
