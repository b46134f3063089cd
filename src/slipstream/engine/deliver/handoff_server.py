"""The runner's side of the socket hand-off (protocol: ``protocol/handoff.py``).

The runner writes the stream's body, HTTP/1.1 chunks of SSE events, to the client's own
socket: from the engine thread while the socket keeps up (``DirectWriter``), else from the
loop through ``LentSocket``. It never writes the terminating chunk or ``[DONE]``: the
gateway writes those after recording usage, so a client that saw the end also sees its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

from slipstream.engine.core.jobs import Job, JobDone, JobFailed
from slipstream.engine.deliver.direct_stream import DirectWriter
from slipstream.engine.deliver.lent_socket import ClientGone, LentSocket
from slipstream.engine.deliver.report_channel import ReportChannel
from slipstream.engine.deliver.stream_pump import OutputClock, StreamShape, pump
from slipstream.engine.deliver.unix_socket import bind_private
from slipstream.engine.errors import invalid
from slipstream.engine.prepare.params import parse_chat_request
from slipstream.engine.prepare.service import RunnerState
from slipstream.errors import SlipstreamError
from slipstream.protocol.chunks import ChunkIdentity, ChunkWriter
from slipstream.protocol.handoff import read_request, receive_socket
from slipstream.protocol.usage import usage

log = logging.getLogger("slipstream.engine.handoff")
USAGE_REPORT_S = 1.0  # a crash loses at most this much metering, beyond the doubling reports


class HandoffServer:
    """Accepts the gateway's hand-off connections on a Unix socket only this user can open."""

    def __init__(self, state: RunnerState, path: Path) -> None:
        self._state = state
        self._path = path
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = bind_private(self._path)
        sock.listen(1024)
        sock.setblocking(False)
        self._listener = sock
        self._track(self._accept_loop(sock))

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            self._track(self._serve(conn))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        self._path.unlink(missing_ok=True)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            with conn:
                await _Handoff(self._state, loop, conn).run()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("hand-off failed")


class _Handoff:
    """One handed-off request, from the gateway's message to the runner's ``done`` report."""

    def __init__(self, state: RunnerState, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        self._state = state
        self._loop = loop
        self._conn = conn
        self._job: Job | None = None  # set while usage reports may be sent
        self._shape: StreamShape | None = None
        self._next_report = 1  # completion count that triggers the next usage report: 1, 2, 4, ...
        self._reports = ReportChannel(loop, conn)

    async def _send(self, message: dict[str, Any]) -> None:
        self._reports.send(message)
        await self._reports.drain()

    async def run(self) -> None:
        message = await read_request(self._loop, self._conn)
        if message is None:
            return
        job = await self._admit(message)
        if job is None:
            return
        try:
            first = await job.sink.get()  # the head waits for output, so an early failure keeps its status
            failed = next((ev for ev in first if isinstance(ev, JobFailed)), None)
            if failed is not None:
                await self._send({"done": "error", "usage": self._usage(job), "message": failed.message})
                return
            await self._send({"ready": True})
            lent = await receive_socket(self._loop, self._conn)
            if lent is None:
                return
            self._state.lent_streams += 1
            self._job = job
            await self._stream(job, *lent, first)
        finally:
            if job.direct is not None:
                job.direct.close()
            if not job.finished:
                self._state.engine.cancel(job)

    async def _admit(self, message: dict[str, Any]) -> Job | None:
        state = self._state
        try:
            req = parse_chat_request(message.get("request"), default_model=state.model_id, max_n=state.parallel,
                                     n_vocab=state.model.n_vocab)  # fmt: skip
            if not req.stream:
                raise invalid("stream", "Only streams are handed off.")
            self._shape = StreamShape(
                ChunkWriter(ChunkIdentity(str(message["id"]), int(message["created"]), str(message["model"])),
                            usage_key=req.include_usage or req.continuous_usage),
                req.tool_choice != "none", req.include_usage, req.continuous_usage,
            )  # fmt: skip
            job = state.prepare(req)
            job.sink = asyncio.Queue()
            job.direct = DirectWriter(-1)  # counts every event batch from the start; the socket comes later
            try:
                state.engine.submit(job)
            except SlipstreamError:
                state.discard(job)
                raise
        except SlipstreamError as err:
            await self._send({"status": err.status, "error": err.envelope(), "retry_after": err.retry_after})
            return None
        await self._send({"accepted": True})
        return job

    def _usage(self, job: Job, completion_tokens: int | None = None) -> dict[str, Any]:
        """``completion_tokens``: what the client has been sent, when the engine may be ahead of it."""
        done = job.completion_tokens if completion_tokens is None else completion_tokens
        return usage(len(job.prompt), done, job.cached_tokens)

    def _on_tokens(self, completion_tokens: int) -> None:
        """Whichever thread renders the chunk, before writing it: usage at 1, 2, 4, 8... tokens."""
        job = self._job
        if job is not None and completion_tokens >= self._next_report:
            self._next_report = max(self._next_report * 2, completion_tokens + 1)
            self._reports.send({"usage": self._usage(job, completion_tokens)})

    def _report_usage(self) -> None:
        if self._job is not None:
            self._reports.send({"usage": self._usage(self._job)})

    def _on_blocked(self, blocked: bool) -> None:
        """If the runner dies while a chunk is half-written, the gateway must not add its error event."""
        if self._job is not None:
            self._reports.send({"blocked": blocked})

    async def _stream(self, job: Job, fd: int, write_timeout_s: float, first: list[Any]) -> None:
        assert self._shape is not None and job.direct is not None
        out = LentSocket(self._loop, fd, self._on_blocked, write_timeout_s)
        job.direct.attach(os.dup(fd))
        clock = OutputClock(self._on_tokens)
        pumping = asyncio.ensure_future(pump(self._state, job, self._shape, out, job.direct, clock, first))
        watching = asyncio.ensure_future(self._watch_gateway())
        status, note = "cancelled", None  # the gateway or the client left
        try:
            await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
            if pumping.done():
                end = pumping.result()  # ClientGone: the client left
                status, note = ("ok", None) if isinstance(end, JobDone) else ("error", end.message)
                job.direct.close()  # no engine write may follow the last chunk
                await out.flush()
        except ClientGone as exc:  # it left, or stopped reading for the write timeout (a slot is not its to keep)
            status, note = "cancelled", str(exc)
        except Exception as exc:
            log.exception("hand-off stream failed")
            status, note = "error", f"internal error: {type(exc).__name__}"
        finally:
            for task in (pumping, watching):
                task.cancel()
            with contextlib.suppress(BaseException):
                await pumping
            out.close()
        if status != "ok" and not job.finished:
            self._state.engine.cancel(job)
        self._job = None  # no report may follow ``done``
        first_at = clock.times[0] if clock.times else None
        await self._send({"done": status, "usage": self._usage(job), "first_at": first_at,
                          "itl": clock.intervals(), "message": note})  # fmt: skip

    async def _watch_gateway(self) -> None:
        """Returns when the gateway shuts its side (the client left); reports usage meanwhile."""
        while True:
            try:
                async with asyncio.timeout(USAGE_REPORT_S):
                    data = await self._loop.sock_recv(self._conn, 1)
            except TimeoutError:
                self._report_usage()
                continue
            if not data:
                return
