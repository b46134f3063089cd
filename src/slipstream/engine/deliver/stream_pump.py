"""One stream's SSE body, built from engine events, whatever carries it to the client.

Two carriers exist: the runner's own aiohttp response (a caller that talks to the runner
directly), and the client's socket handed over by the gateway (``handoff_server.py``). Both
get the same chunks; the carrier only frames and writes them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from slipstream.engine.core.jobs import ChoiceDelta, Job, JobDone, JobFailed
from slipstream.engine.deliver.direct_stream import DirectWriter, RawBytes
from slipstream.engine.deliver.responses import logprob_items, piece_delta
from slipstream.engine.deliver.tool_calls import ChoiceOutput
from slipstream.engine.prepare.service import RunnerState
from slipstream.protocol.chunks import ChunkWriter
from slipstream.protocol.sse import encode_event
from slipstream.protocol.usage import usage


class StreamOut(Protocol):
    """Where the loop thread's part of a stream goes."""

    async def write(self, data: bytes) -> None:
        """SSE events, framed by the carrier (one HTTP chunk)."""

    def write_raw(self, data: RawBytes) -> None:
        """The already-framed tail of a direct write that could not complete."""

    def idle(self) -> bool:
        """Nothing is buffered, so a direct write from the engine thread cannot overtake it."""


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What the client asked the chunks to look like."""

    chunks: ChunkWriter
    tools: bool
    include_usage: bool
    continuous: bool


class Choices:
    """Per-choice output assembly shared by the JSON and SSE paths."""

    def __init__(self, n: int, tools: bool) -> None:
        self.outputs = [ChoiceOutput(tools) for _ in range(n)]
        self.tokens = [0] * n
        self.finish: list[str | None] = [None] * n

    def finish_reason(self, i: int, raw: str) -> str:
        out = self.outputs[i]
        if out.call is not None and out.call_complete and raw == "stop":
            return "tool_calls"
        return raw


class OutputClock:
    """When a stream produced output (any thread appends): the gateway's TTFT and inter-token latency."""

    __slots__ = ("on_tokens", "times")

    def __init__(self, on_tokens: Callable[[int], None] | None = None) -> None:
        self.times: list[float] = []
        self.on_tokens = on_tokens  # told the running completion count after each output

    def tick(self, completion_tokens: int) -> None:
        self.times.append(time.monotonic())
        if self.on_tokens is not None:
            self.on_tokens(completion_tokens)

    def intervals(self) -> list[float]:
        t = self.times
        return [round(b - a, 6) for a, b in itertools.pairwise(t)]


async def pump(
    state: RunnerState,
    job: Job,
    shape: StreamShape,
    out: StreamOut,
    direct: DirectWriter | None,
    clock: OutputClock | None = None,
    first: list[Any] | None = None,
) -> JobDone | JobFailed:
    """Write the stream up to its last chunk (usage when asked for); the caller ends it.

    ``first`` is an event batch the caller already took from the job's queue."""
    ch = Choices(job.n, shape.tools)
    chunks = shape.chunks

    def running_usage() -> dict[str, Any] | None:
        if not shape.continuous:
            return None
        return usage(len(job.prompt), sum(ch.tokens), job.cached_tokens)

    def render(ev: ChoiceDelta) -> list[bytes]:
        return _delta_events(state, chunks, ch, ev, running_usage, shape.continuous, clock)

    if direct is not None:
        direct.render = render
    started = False
    while True:
        events = first if first is not None else await job.sink.get()
        first = None
        data: list[bytes] = []
        if not started:
            started = True
            role = {"role": "assistant", "content": ""}
            data += [encode_event(chunks.chunk(i, role, usage=running_usage())) for i in range(job.n)]
        for ev in events:
            if isinstance(ev, RawBytes):  # the rest of a direct write: already framed, goes first
                out.write_raw(ev)
            elif isinstance(ev, ChoiceDelta):
                data += render(ev)
            else:
                if isinstance(ev, JobDone) and shape.include_usage:
                    use = usage(ev.prompt_tokens, ev.completion_tokens, ev.cached_tokens)
                    data.append(encode_event(chunks.usage_chunk(use)))
                if data:
                    await out.write(b"".join(data))
                end: JobDone | JobFailed = ev
                return end
        if data:
            await out.write(b"".join(data))
        if direct is not None:
            direct.try_activate(job.sink.empty() and out.idle())


def _delta_events(
    state: RunnerState,
    chunks: ChunkWriter,
    ch: Choices,
    ev: ChoiceDelta,
    running_usage: Callable[[], dict[str, Any] | None],
    continuous: bool,
    clock: OutputClock | None,
) -> list[bytes]:
    i = ev.index
    ch.tokens[i] = ev.completion_tokens
    output = ch.outputs[i]
    pieces = output.feed(ev.text)
    if ev.finish_reason is not None:
        pieces += output.finish()
    lp = logprob_items(state.model, ev.logprobs) if ev.logprobs else None
    out = []
    for piece in pieces:
        out.append(encode_event(chunks.chunk(i, piece_delta(piece), logprobs=lp, usage=running_usage())))
        lp = None
    if pieces and clock is not None:
        clock.tick(sum(ch.tokens))
    if not pieces and (lp is not None or (continuous and ev.finish_reason is None)):
        out.append(encode_event(chunks.chunk(i, {"content": ""}, logprobs=lp, usage=running_usage())))
    if ev.finish_reason is not None:
        reason = ch.finish_reason(i, ev.finish_reason)
        out.append(encode_event(chunks.chunk(i, {}, finish_reason=reason, usage=running_usage())))
    return out
