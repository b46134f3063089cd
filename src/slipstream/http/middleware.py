"""Pure ASGI middleware (no BaseHTTPMiddleware on the hot path): a request id on every response."""

from __future__ import annotations

import logging
import os

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slipstream.observability.context import set_request_id

log = logging.getLogger(__name__)


def new_request_id() -> str:
    return os.urandom(12).hex()


class RequestIdMiddleware:
    """Gives each request an id (``scope["state"]["request_id"]``) and echoes it as ``x-request-id``.

    A client that disconnects while sending its body is one INFO line here: nobody is left to
    answer, and letting ``ClientDisconnect`` escape logged two tracebacks (our handler's, uvicorn's).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        set_request_id(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            log.info("request %s: the client disconnected before sending its whole body", request_id)
