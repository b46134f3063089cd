"""Chat completions: scope check → provider → usage meter → client-shaped output.

Errors before the first byte reach the client as a status code; once a stream has started
they become one final SSE error event. Either way the usage row is written exactly once,
also when the client goes away mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from slipstream.auth.principal import Principal
from slipstream.catalog import Catalog
from slipstream.errors import ModelNotFound, SlipstreamError
from slipstream.ledger.recorder import UsageRecorder
from slipstream.observability.metrics import Metrics
from slipstream.protocol.chat import parse_chat_request
from slipstream.protocol.chunks import ChunkIdentity, ChunkShaper
from slipstream.protocol.sse import DONE, KEEPALIVE, encode_event
from slipstream.providers.base import HEARTBEAT, ChatCall, Provider, StreamEvent
from slipstream.providers.registry import ProviderRegistry
from slipstream.serving.lent_stream import LentStreamCall
from slipstream.serving.metering import UsageMeter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PreparedCall:
    call: ChatCall
    provider: Provider
    principal: Principal


class ChatService:
    def __init__(
        self, catalog: Catalog, providers: ProviderRegistry, recorder: UsageRecorder, metrics: Metrics
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._recorder = recorder
        self._metrics = metrics
        self._closing: set[asyncio.Future[Any]] = set()  # upstream streams being closed after their relay

    def prepare(self, principal: Principal, body: Any, request_id: str) -> PreparedCall:
        request = parse_chat_request(body)
        entry = self._catalog.get(request.model)
        if entry is None or not principal.may_use(entry.id):
            raise ModelNotFound(request.model)  # as /v1/models/{id}: out of scope looks like absent
        provider = self._providers.for_entry(entry)
        dropped = provider.check(request)
        payload = {k: v for k, v in body.items() if k not in dropped} if dropped else body
        self._recorder.admit()  # no request is served that the ledger could not bill
        return PreparedCall(ChatCall(request_id, entry, request, payload, dropped), provider, principal)

    def _meter(self, prepared: PreparedCall, *, stream: bool) -> UsageMeter:
        call = prepared.call
        metrics = self._metrics.for_model(call.entry.id)
        return UsageMeter(self._recorder, metrics, prepared.principal, call.entry, call.request_id, stream=stream)

    async def complete(self, prepared: PreparedCall) -> dict[str, Any]:
        meter = self._meter(prepared, stream=False)
        call = prepared.call
        async with _failure_settled(meter):
            result = await prepared.provider.complete(call)
            meter.token_arrived()
            meter.observe(result.get("usage"))
        await meter.settle("ok", 200)  # the answer leaves only once its row is committed
        result["id"] = f"chatcmpl-{call.request_id}"
        result["model"] = call.entry.id
        return result

    async def open_lent_stream(self, prepared: PreparedCall) -> LentStreamCall | None:
        """A stream the model's process writes to the client's socket; None: use ``open_stream``."""
        meter = self._meter(prepared, stream=True)
        call = prepared.call
        identity = ChunkIdentity(f"chatcmpl-{call.request_id}", int(time.time()), call.entry.id)
        async with _failure_settled(meter):
            lent = await prepared.provider.lend_stream(call, identity)
        return None if lent is None else LentStreamCall(lent, meter)

    async def open_stream(self, prepared: PreparedCall) -> AsyncIterator[bytes]:
        """Start the stream; raises before returning if the provider fails before its first event."""
        meter = self._meter(prepared, stream=True)
        events = aiter(prepared.provider.stream(prepared.call))
        async with _failure_settled(meter):
            first = await anext(events, None)
        return self._relay(prepared, meter, first, events)

    async def _relay(
        self,
        prepared: PreparedCall,
        meter: UsageMeter,
        first: StreamEvent | None,
        events: AsyncIterator[StreamEvent],
    ) -> AsyncIterator[bytes]:
        call = prepared.call
        options = call.request.stream_options
        shaper = ChunkShaper(
            ChunkIdentity(f"chatcmpl-{call.request_id}", int(time.time()), call.entry.id),
            include_usage=bool(options and options.include_usage),
            continuous=bool(options and options.continuous_usage_stats),
        )
        try:
            event = first
            while event is not None:
                if event is HEARTBEAT:
                    yield KEEPALIVE
                else:
                    assert isinstance(event, dict)
                    meter.observe(event.get("usage"))
                    if _has_output(event):
                        meter.token_arrived()
                    out = shaper.shape(event)
                    if out is not None:
                        yield encode_event(out)
                event = await anext(events, None)
            await meter.settle("ok", 200)  # [DONE] only once the row is committed
            yield DONE
        except SlipstreamError as exc:
            await meter.settle_failure(exc)
            yield encode_event(exc.envelope())
        except (asyncio.CancelledError, GeneratorExit) as exc:
            meter.fail(exc)
            raise
        except Exception as exc:  # the client must get an error event, never a silent stop
            log.exception("stream %s failed", call.request_id)
            await meter.settle_failure(exc)
            yield encode_event(SlipstreamError("The server failed while streaming.").envelope())
        finally:
            closer = getattr(events, "aclose", None)
            if closer is not None:
                task = asyncio.ensure_future(closer())  # kept until done: a loop holds tasks weakly
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                task.add_done_callback(lambda t: t.cancelled() or t.exception())


@contextlib.asynccontextmanager
async def _failure_settled(meter: UsageMeter) -> AsyncIterator[None]:
    """A failure before the response starts: its committed usage row, then the exception for the status."""
    try:
        yield
    except BaseException as exc:
        await meter.settle_failure(exc)
        raise


def _has_output(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls"):
            return True
    return False
