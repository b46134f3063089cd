"""Reading request bodies within the configured size limit, and decoding them as JSON."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from slipstream.errors import InvalidRequest, RequestTooLarge

# Bodies up to this size are read and discarded before a 413 is sent: closing a socket with
# unread data makes the kernel send a reset, and the client would never see the 413.
DRAIN_LIMIT = 64 * 1024 * 1024


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")


async def _drain(request: Request, already: int) -> None:
    seen = already
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > DRAIN_LIMIT:
            return


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; a client that leaves (or is cut off by ``http.body_timeout_s``) midway is a
    client error, not a server failure: nobody will read the answer, and nothing is logged."""
    try:
        return await _read_body(request, limit)
    except ClientDisconnect:
        raise InvalidRequest("The request body did not arrive whole.", code="incomplete_body") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_LIMIT:
            await _drain(request, 0)
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, size)
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, *, allow_empty: bool = False) -> Any:
    """The decoded body; ``None`` for an empty body only when ``allow_empty``."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if allow_empty:
            return None
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_request_body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
