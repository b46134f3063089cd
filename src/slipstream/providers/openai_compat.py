"""Any OpenAI-compatible upstream: vLLM, llama-server, Ollama, another Slipstream, our own runners.

One pooled aiohttp session per upstream. Upstream errors keep their OpenAI code and param;
connection failures become 502/503 so that a client knows it may retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from slipstream.catalog import ModelEntry
from slipstream.errors import ModelUnavailable, SlipstreamError, UpstreamError, from_envelope
from slipstream.providers.base import ChatCall, Provider, StreamEvent

_CONNECT_ERRORS = (aiohttp.ClientConnectionError, ConnectionError, asyncio.TimeoutError)


def new_session(*, read_timeout: float | None = 600.0, unix_socket: str | None = None) -> aiohttp.ClientSession:
    connector: aiohttp.BaseConnector
    if unix_socket:
        connector = aiohttp.UnixConnector(unix_socket, limit=0, keepalive_timeout=30)
    else:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True)


def _retry_after(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("Retry-After")
    return int(value) if value and value.isdigit() else None


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    if resp.status == 200:
        return
    raw = await resp.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {"error": {"message": raw[:500].decode("utf-8", "replace")}}
    raise from_envelope(resp.status, body, retry_after=_retry_after(resp))


class OpenAICompatClient:
    """Chat completions against one OpenAI-compatible base URL (ending in ``/v1``)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, api_key: str | None = None) -> None:
        self._url = URL(base_url.rstrip("/") + "/chat/completions")  # parsed once, not per request
        self._session = session
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(self._url, data=orjson.dumps(payload), headers=self._headers) as resp:
                await _raise_for_status(resp)
                result: dict[str, Any] = orjson.loads(await resp.read())
                return result
        except _CONNECT_ERRORS as exc:
            raise ModelUnavailable(f"The model backend is unreachable: {exc!r}", retry_after=1) from exc
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The model backend sent invalid JSON.") from exc

    async def stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield decoded chunks; an upstream error event is raised, never swallowed."""
        started = False
        try:
            async with self._session.post(self._url, data=orjson.dumps(payload), headers=self._headers) as resp:
                await _raise_for_status(resp)
                started = True
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        raise from_envelope(502, chunk)
                    yield chunk
            raise UpstreamError("The model backend ended the stream without [DONE].")
        except SlipstreamError:
            raise
        except _CONNECT_ERRORS as exc:
            if started:
                raise UpstreamError(f"The model backend failed mid-stream: {exc!r}") from exc
            raise ModelUnavailable(f"The model backend is unreachable: {exc!r}", retry_after=1) from exc
        except (aiohttp.ClientPayloadError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(f"The model backend sent a broken stream: {exc!r}") from exc


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
    """A self-hosted OpenAI-compatible server named in the catalog by ``base_url``."""

    def __init__(self, entry: ModelEntry, api_key: str | None = None) -> None:
        assert entry.base_url is not None
        self._session = new_session()
        self._client = OpenAICompatClient(entry.base_url, self._session, api_key)

    def check(self, request: Any) -> None:
        """Unknown parameters are the upstream's to accept or reject, so they pass through."""

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        return await self._client.complete(upstream_payload(call))

    async def stream(self, call: ChatCall) -> AsyncIterator[StreamEvent]:
        async for chunk in self._client.stream(upstream_payload(call)):
            yield chunk

    async def aclose(self) -> None:
        await self._session.close()
