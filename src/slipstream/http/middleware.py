"""Pure ASGI middleware (no BaseHTTPMiddleware on the hot path): a request id on every response."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def new_request_id() -> str:
    return os.urandom(12).hex()


class RequestIdMiddleware:
    """Gives each request an id (``scope["state"]["request_id"]``) and echoes it as ``x-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
