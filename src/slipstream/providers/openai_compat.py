"""Any self-hosted or paid OpenAI-compatible upstream named in the catalog by ``base_url``.

The HTTP side (pooled session, error mapping) is ``slipstream.upstream.client``; this module
decides what of a request goes upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from slipstream.catalog import ModelEntry
from slipstream.protocol.contract import BOOKKEEPING_PARAMS
from slipstream.providers.base import ChatCall, Provider, StreamEvent
from slipstream.upstream.client import OpenAICompatClient, new_session


def upstream_payload(call: ChatCall, *, continuous_usage: bool = False) -> dict[str, Any]:
    """The request as the upstream should see it: its own model name, and usage always on."""
    payload = dict(call.payload)
    payload["model"] = call.entry.target_model
    if payload.get("stream"):
        options = {"include_usage": True}
        if continuous_usage:
            options["continuous_usage_stats"] = True
        payload["stream_options"] = options
    return payload


class OpenAICompatProvider(Provider):
    """A self-hosted or paid OpenAI-compatible server named in the catalog by ``base_url``.

    The operator may pay for every call, so only the OpenAI core parameters go through by
    default: bookkeeping ones (``store``, ``service_tier``, ...) are dropped and named in a response
    header, and any other unknown one is refused by name. The entry's ``forward_params`` lets more
    through: the upstream's own knobs (vLLM's ``top_k``) or bookkeeping the operator accepts.
    """

    def __init__(self, entry: ModelEntry, api_key: str | None = None) -> None:
        assert entry.base_url is not None
        self._session = new_session()
        self._client = OpenAICompatClient(entry.base_url, self._session, api_key, external=True)
        forwarded = frozenset(entry.forward_params)
        self.extra_params = forwarded - BOOKKEEPING_PARAMS
        self.forwarded_bookkeeping = forwarded & BOOKKEEPING_PARAMS

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        return await self._client.complete(upstream_payload(call))

    async def stream(self, call: ChatCall) -> AsyncIterator[StreamEvent]:
        async for chunk in self._client.stream(upstream_payload(call)):
            yield chunk

    async def aclose(self) -> None:
        await self._session.close()
