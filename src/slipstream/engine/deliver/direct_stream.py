"""Stream chunks written by the engine thread straight to the client's socket.

Through the event loop, every decode step costs a wake-up of the HTTP thread per stream: a
thread switch, a GIL hand-off and a loop iteration, about 250 us of CPU per token here, taken
from the two cores the compute threads are using. With the gateway in front, a token then
crosses three processes' wake-ups where llama-server needs two. So once a stream's headers and
first chunk are out, the engine thread frames each step's chunks itself (HTTP/1.1 chunked
encoding) and writes them with one ``os.write`` on the non-blocking socket; only the final
events (usage, ``[DONE]``, errors) go back through the loop.

The switch must not reorder bytes. Events the engine already posted to the loop are counted
(``posted``) against those the loop has queued for the handler (``received``); the handler
switches to direct mode only when the two match, its queue is empty and the transport's
buffer is empty, under the same lock the engine thread takes to choose a path. A write that
cannot complete (a slow reader filled the socket buffer) hands the unwritten bytes and all
later events back to the loop for good, so the loop's flow control takes over.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

from slipstream.engine.core.jobs import ChoiceDelta, Event, Job


class RawBytes(bytes):
    """Already-framed bytes the engine thread could not write; the loop writes them as they are."""


Render = Callable[[ChoiceDelta], list[bytes]]


class DirectWriter:
    """One stream's direct path. Created before the job is submitted, so every event batch the
    engine posts to the loop is counted; ``render`` is set once the response has started."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.render: Render | None = None
        self.lock = threading.Lock()
        self.active = False  # set by the loop thread once switching cannot reorder bytes
        self.given_up = False  # a short write or a dead socket: the loop carries the rest
        self.posted = 0  # event batches the engine thread handed to the loop (under ``lock``)
        self.received = 0  # of those, how many the loop has queued for the handler

    @classmethod
    def for_connection(
        cls, transport: asyncio.BaseTransport | None, http_version: tuple[int, int]
    ) -> DirectWriter | None:
        """A writer for this connection, or None when direct writes are not possible."""
        if transport is None or http_version < (1, 1) or transport.is_closing():
            return None  # HTTP/1.0 has no chunked encoding to frame the chunks with
        sock = transport.get_extra_info("socket")
        fileno = getattr(sock, "fileno", None)
        fd = fileno() if fileno is not None else -1
        # A descriptor of our own: if the loop closes the connection while a step is being
        # written, the number cannot meanwhile be reused for another client's connection.
        return cls(os.dup(fd)) if fd >= 0 else None

    def attach(self, fd: int) -> None:
        """Loop thread: the descriptor to write to, when it arrives after the job was submitted."""
        with self.lock:
            self._fd = fd

    def try_activate(self, idle: bool) -> None:
        """Loop thread: switch to direct writes if nothing is in flight through the loop.

        ``idle`` says the loop has no events queued and the carrier has nothing buffered."""
        with self.lock:
            if self.active or self.given_up or self.render is None or self._fd < 0:
                return
            if idle and self.posted == self.received:
                self.active = True

    def give_up(self) -> None:
        with self.lock:
            self.given_up = True

    def close(self) -> None:
        """Loop thread, when the request ends: no write can follow, and the descriptor is released."""
        with self.lock:
            self.given_up = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def push(self, events: list[Event]) -> list[Event | RawBytes]:
        """Engine thread, under ``lock``: write the chunks it can; return what the loop must handle."""
        if not self.active or self.given_up or self.render is None:
            return list(events)
        body: list[bytes] = []
        rest: list[Event | RawBytes] = []
        for i, ev in enumerate(events):
            if not isinstance(ev, ChoiceDelta):
                rest = list(events[i:])
                break
            body += self.render(ev)
        if not body:
            return rest
        payload = b"".join(body)
        data = b"%x\r\n%b\r\n" % (len(payload), payload)
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:  # the client is gone; the loop notices too and cancels the request
            self.given_up = True
            return rest
        if written < len(data):
            self.given_up = True
            return [RawBytes(data[written:]), *rest]
        return rest


def make_deliver(loop: asyncio.AbstractEventLoop) -> Callable[[list[tuple[Job, list[Event]]]], None]:
    """The engine's hand-off, once per decode step: direct writes first, one loop wake-up for the rest."""

    def dispatch(items: list[tuple[Job, list[Event | RawBytes]]]) -> None:
        for job, events in items:
            if job.direct is not None:
                job.direct.received += 1
            if job.sink is not None:
                job.sink.put_nowait(events)

    def deliver(items: list[tuple[Job, list[Event]]]) -> None:
        to_loop: list[tuple[Job, list[Event | RawBytes]]] = []
        for job, events in items:
            writer: DirectWriter | None = job.direct
            if writer is None:
                to_loop.append((job, list(events)))
                continue
            with writer.lock:
                rest = writer.push(events)
                if rest:
                    writer.posted += 1
                    to_loop.append((job, rest))
        if to_loop:
            loop.call_soon_threadsafe(dispatch, to_loop)

    return deliver


def write_raw(transport: Any, data: RawBytes) -> None:
    """Loop thread: the unwritten tail of a direct write, already framed."""
    if transport is not None and not transport.is_closing():
        transport.write(bytes(data))
