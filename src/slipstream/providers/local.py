"""Local GGUF models, served by our own runner processes through the supervisor.

The runner speaks OpenAI-compatible HTTP, so the calls go through the same client as any
self-hosted upstream; only the lease around them (cold start, keep-alive) is special.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from slipstream.catalog import ModelEntry
from slipstream.errors import ModelUnavailable
from slipstream.protocol.chunks import ChunkIdentity
from slipstream.protocol.contract import LOCAL_PARAMS
from slipstream.providers.base import HEARTBEAT, ChatCall, LentStream, Provider, StreamEvent
from slipstream.providers.openai_compat import upstream_payload
from slipstream.runners.exit_cause import describe_serving_exit
from slipstream.runners.handoff_client import HandoffConnection
from slipstream.runners.supervisor import Runner, Supervisor

HEARTBEAT_INTERVAL_S = 1.0


class LocalProvider(Provider):
    extra_params = LOCAL_PARAMS

    def __init__(self, entry: ModelEntry, supervisor: Supervisor) -> None:
        self._entry = entry
        self._supervisor = supervisor

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        runner = await self._supervisor.acquire(self._entry)
        try:
            return await runner.client.complete(self._payload(call))
        except ModelUnavailable as exc:
            raise await self._explained(runner, exc) from exc
        finally:
            self._supervisor.release(runner)

    async def stream(self, call: ChatCall) -> AsyncIterator[StreamEvent]:
        acquiring = asyncio.ensure_future(self._supervisor.acquire(self._entry))
        try:
            while not acquiring.done():
                done, _ = await asyncio.wait({acquiring}, timeout=HEARTBEAT_INTERVAL_S)
                if not done:
                    yield HEARTBEAT
        except BaseException:
            acquiring.cancel()
            acquiring.add_done_callback(self._release_if_acquired)
            raise
        runner = acquiring.result()
        try:
            async for chunk in runner.client.stream(self._payload(call)):
                yield chunk
        except ModelUnavailable as exc:
            raise await self._explained(runner, exc) from exc
        finally:
            self._supervisor.release(runner)

    async def _explained(self, runner: Runner, exc: ModelUnavailable) -> ModelUnavailable:
        """A runner that died under the request: say how (a signal, an exit status) instead of
        "backend unreachable"; an error from a live runner passes through unchanged."""
        code = await runner.exit_code()
        if code is None:
            return exc
        return ModelUnavailable(describe_serving_exit(self._entry.id, code), retry_after=exc.retry_after)

    async def lend_stream(self, call: ChatCall, identity: ChunkIdentity) -> LentStream | None:
        """Only a loaded runner takes a lent stream: a cold start needs the relay's keep-alives."""
        runner = self._supervisor.acquire_loaded(self._entry)
        if runner is None:
            return None
        if runner.started.handoff is None:
            self._supervisor.release(runner)
            return None
        payload = dict(call.payload)  # the client's own stream_options: the runner shapes the chunks
        payload["model"] = self._entry.target_model
        message = {"request": payload, "id": identity.id, "created": identity.created, "model": identity.model}
        lent = await HandoffConnection.open(
            runner.started.handoff, message, release=lambda: self._supervisor.release(runner)
        )
        if lent is not None:
            try:
                await lent.wait_ready()
            except BaseException:
                lent.close()
                raise
        return lent

    def _release_if_acquired(self, task: asyncio.Future[Runner]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._supervisor.release(task.result())

    def _payload(self, call: ChatCall) -> dict[str, Any]:
        return upstream_payload(call, continuous_usage=True)
