"""aiohttp routes of the runner: health, models, status and chat completions (JSON or SSE).

Engine events arrive once per decode step through ``deliver`` (thread-safe). A client that
disconnects cancels its handler (``handler_cancellation``) or fails a write; either way the
job is cancelled and the engine frees its slot at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import orjson
import psutil
from aiohttp import web

from slipstream.engine.core.host_cache import HostCache
from slipstream.engine.core.jobs import ChoiceDelta, Job, JobDone, JobFailed
from slipstream.engine.deliver.direct_stream import DirectWriter, RawBytes, write_raw
from slipstream.engine.deliver.responses import completion_id, logprob_items, tool_call_dict
from slipstream.engine.deliver.stream_pump import Choices, StreamShape, pump
from slipstream.engine.errors import internal, invalid
from slipstream.engine.prepare.params import parse_chat_request
from slipstream.engine.prepare.service import RunnerState
from slipstream.errors import ModelNotFound, SlipstreamError, from_envelope
from slipstream.protocol.chunks import ChunkIdentity, ChunkWriter, choice, completion
from slipstream.protocol.sse import DONE, SSE_HEADERS, encode_event
from slipstream.protocol.usage import usage

STATE = web.AppKey("state", RunnerState)
log = logging.getLogger("slipstream.engine.http")
STREAM_HEADERS = {"Content-Type": "text/event-stream", **SSE_HEADERS}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def error_response(err: SlipstreamError) -> web.Response:
    return json_response(err.envelope(), err.status, err.headers() or None)


async def health(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def _model_obj(state: RunnerState) -> dict[str, Any]:
    created = int(state.engine.loaded_at)
    return {"id": state.model_id, "object": "model", "created": created, "owned_by": "slipstream"}


async def models(request: web.Request) -> web.Response:
    return json_response({"object": "list", "data": [_model_obj(request.app[STATE])]})


async def model_detail(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.match_info["model"] != state.model_id:
        return error_response(ModelNotFound(request.match_info["model"]))
    return json_response(_model_obj(state))


async def status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    engine = state.engine
    return json_response(
        {
            "model": state.model_id,
            "pid": state.pid,
            "n_ctx": state.n_ctx,
            "parallel": state.parallel,
            "active": engine.active_jobs,
            "queued": engine.queued,
            "slots_in_use": engine.slots_in_use,
            "loaded_at": engine.loaded_at,
            "last_active_at": engine.last_active_at,
            "rss_bytes": psutil.Process(os.getpid()).memory_info().rss,
            "tokens_generated": engine.tokens_generated,
            "lent_streams": state.lent_streams,
            "admitted_requests": engine.admitted_jobs,
            "queue_wait_s_total": round(engine.queue_wait_s, 6),
            "first_token_wait_steps": wait_summary(list(engine.first_token_waits)),
            "host_cache": host_cache_summary(engine.host_cache),
        }
    )


def host_cache_summary(cache: HostCache | None) -> dict[str, int] | None:
    if cache is None:
        return None
    return {"entries": len(cache), "bytes": cache.bytes, "saved": cache.saved, "restored": cache.restored}


def wait_summary(waits: list[int]) -> dict[str, int]:
    """Decode steps recent requests waited for their first token: a fairness gauge (batching.py)."""
    if not waits:
        return {"count": 0}
    ordered = sorted(waits)

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return error_response(invalid(None, f"We could not parse the JSON body of your request: {exc}"))
    try:
        req = parse_chat_request(body, default_model=state.model_id, max_n=state.parallel,
                                 n_vocab=state.model.n_vocab)  # fmt: skip
        job = state.prepare(req)
    except SlipstreamError as err:
        return error_response(err)
    job.sink = asyncio.Queue()
    if req.stream:
        job.direct = DirectWriter.for_connection(request.transport, request.version)
    try:
        state.engine.submit(job)
    except SlipstreamError as err:
        state.discard(job)
        if job.direct is not None:
            job.direct.close()
        return error_response(err)
    tools = req.tool_choice != "none"
    try:
        if req.stream:
            shape = StreamShape(ChunkWriter(ChunkIdentity(completion_id(), int(time.time()), req.model)), tools,
                                req.include_usage, req.continuous_usage)  # fmt: skip
            return await _stream(request, state, job, shape)
        return await _collect(state, job, req.model, tools)
    finally:
        if job.direct is not None:
            job.direct.close()
        if not job.finished:
            state.engine.cancel(job)


async def _collect(state: RunnerState, job: Job, model: str, tools: bool) -> web.Response:
    identity = ChunkIdentity(completion_id(), int(time.time()), model)
    ch = Choices(job.n, tools)
    logprobs: list[list[dict[str, Any]]] = [[] for _ in range(job.n)]
    while True:
        for ev in await job.sink.get():
            if isinstance(ev, JobFailed):
                return error_response(internal(ev.message))
            if isinstance(ev, ChoiceDelta):
                out = ch.outputs[ev.index]
                out.feed(ev.text)
                if ev.logprobs:
                    logprobs[ev.index].extend(logprob_items(state.model, ev.logprobs))
                if ev.finish_reason is not None:
                    out.finish()
                    ch.finish[ev.index] = ch.finish_reason(ev.index, ev.finish_reason)
                continue
            choices = []
            for i, out in enumerate(ch.outputs):
                calls = [tool_call_dict(out.call)] if out.call is not None else []
                content: str | None = out.content
                if calls and not out.content.strip():
                    content = None
                lp = logprobs[i] if job.top_logprobs is not None else None
                choices.append(choice(i, content, calls, ch.finish[i], lp))
            use = usage(ev.prompt_tokens, ev.completion_tokens, ev.cached_tokens, details=True)
            return json_response(completion(identity, choices, use))


class _ResponseOut:
    """The runner's own aiohttp response as a stream carrier (aiohttp frames the chunks)."""

    def __init__(self, request: web.Request, resp: web.StreamResponse) -> None:
        self._request = request
        self._resp = resp

    async def write(self, data: bytes) -> None:
        await self._resp.write(data)

    def write_raw(self, data: RawBytes) -> None:
        write_raw(self._request.transport, data)

    def idle(self) -> bool:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            return False
        buffered = getattr(transport, "get_write_buffer_size", None)  # uvloop's are not WriteTransports
        return buffered is not None and buffered() == 0


async def _stream(request: web.Request, state: RunnerState, job: Job, shape: StreamShape) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers=STREAM_HEADERS)
    await resp.prepare(request)
    direct: DirectWriter | None = job.direct
    if direct is not None and resp.headers.get("Transfer-Encoding") != "chunked":
        direct.give_up()  # aiohttp did not choose chunking in prepare(): nothing to frame with
        direct = None
    end = await pump(state, job, shape, _ResponseOut(request, resp), direct)
    if isinstance(end, JobDone):
        await resp.write(DONE)
    else:
        await resp.write(encode_event(internal(end.message).envelope()))
    await resp.write_eof()
    return resp


@web.middleware
async def openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Any failure leaves as an OpenAI envelope, never as aiohttp's HTML error page."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException as exc:
        err = from_envelope(exc.status, {"error": {"message": exc.reason}})
        return json_response(err.envelope(), exc.status)
    except Exception as exc:
        log.exception("request failed")
        return error_response(internal(f"internal error: {type(exc).__name__}"))


def create_app(state: RunnerState) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[openai_errors])
    app[STATE] = state
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model_detail)
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app
