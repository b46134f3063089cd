"""The HTTP client for any OpenAI-compatible server: vLLM, llama-server, Ollama, another Slipstream, our runners.

Below both the providers and the runners' supervisor, which reach their servers through it.
One pooled aiohttp session per upstream. Our own runners' errors keep their OpenAI message, code
and param; an external upstream's are reduced to what a client may see (``upstream/errors.py``).
Connection failures become 502/503 so that a client knows it may retry; their details (hosts,
ports, socket paths) go to the log only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from slipstream.errors import ModelUnavailable, SlipstreamError, UpstreamError, from_envelope
from slipstream.upstream.errors import FAILED, UNREACHABLE, upstream_failure, upstream_refusal

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


class OpenAICompatClient:
    """Chat completions against one OpenAI-compatible base URL (ending in ``/v1``).

    ``external``: an upstream outside Slipstream, whose error texts never reach a client.
    """

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, api_key: str | None = None, *, external: bool = False
    ) -> None:
        self._url = URL(base_url.rstrip("/") + "/chat/completions")  # parsed once, not per request
        self._session = session
        self._external = external
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status == 200:
            return
        raw = await resp.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"error": {"message": raw[:500].decode("utf-8", "replace")}}
        if self._external:
            raise upstream_refusal(self._url, resp.status, body, _retry_after(resp))
        raise from_envelope(resp.status, body, retry_after=_retry_after(resp))

    def _unreachable(self, exc: BaseException) -> ModelUnavailable:
        upstream_failure(self._url, "is unreachable", exc)
        return ModelUnavailable(UNREACHABLE, retry_after=1)

    def _broken(self, what: str, exc: BaseException | str) -> UpstreamError:
        upstream_failure(self._url, what, exc)
        return UpstreamError(FAILED if self._external else f"The model backend {what}.")

    def _error_event(self, chunk: dict[str, Any]) -> SlipstreamError:
        if self._external:
            return self._broken("sent an error event", str(chunk.get("error"))[:500])
        return from_envelope(502, chunk)

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(self._url, data=orjson.dumps(payload), headers=self._headers) as resp:
                await self._raise_for_status(resp)
                result: dict[str, Any] = orjson.loads(await resp.read())
                return result
        except _CONNECT_ERRORS as exc:
            raise self._unreachable(exc) from exc
        except orjson.JSONDecodeError as exc:
            raise self._broken("sent invalid JSON", exc) from exc

    async def stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield decoded chunks; an upstream error event is raised, never swallowed."""
        started = False
        try:
            async with self._session.post(self._url, data=orjson.dumps(payload), headers=self._headers) as resp:
                await self._raise_for_status(resp)
                started = True
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        raise self._error_event(chunk)
                    yield chunk
            raise self._broken("ended the stream without [DONE]", "no [DONE]")
        except SlipstreamError:
            raise
        except _CONNECT_ERRORS as exc:
            if started:
                raise self._broken("failed mid-stream", exc) from exc
            raise self._unreachable(exc) from exc
        except (aiohttp.ClientPayloadError, orjson.JSONDecodeError) as exc:
            raise self._broken("sent a broken stream", exc) from exc
