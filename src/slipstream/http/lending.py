"""Access to a request's client socket, so that a local runner can write a stream's body to it.

ASGI hides the connection; uvicorn's httptools protocol is subclassed to put its transport in
the scope's ``extensions``, the place ASGI reserves for server-specific additions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TRANSPORT_EXTENSION = "slipstream.transport"
LIMITS_EXTENSION = "slipstream.limits"  # {"write_timeout_s"}: set by ``connection_limits.py``
DEFAULT_WRITE_TIMEOUT_S = 30.0  # for a scope without that extension
_LENDABLE_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets and drops unsent bytes


class TransportExposingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with each request's transport in ``scope["extensions"]``."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_EXTENSION: self.transport}  # type: ignore[typeddict-unknown-key,dict-item]


def lendable_socket(scope: dict[str, Any] | Any) -> tuple[asyncio.Transport, int] | None:
    """The transport and descriptor of a plain HTTP/1.1 connection, else None (TLS, HTTP/1.0, closed)."""
    transport = (scope.get("extensions") or {}).get(TRANSPORT_EXTENSION)
    if transport is None or transport.is_closing() or scope.get("http_version") != "1.1":
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in _LENDABLE_FAMILIES:
        return None
    fd = sock.fileno()
    return (transport, fd) if fd >= 0 else None


def write_timeout(scope: dict[str, Any] | Any) -> float:
    """How long this connection's client may take no byte of a response (``http.write_timeout_s``)."""
    limits = (scope.get("extensions") or {}).get(LIMITS_EXTENSION) or {}
    return float(limits.get("write_timeout_s", DEFAULT_WRITE_TIMEOUT_S))


def reset_connection(transport: asyncio.BaseTransport) -> None:
    """End a connection at once with a reset, so the kernel frees the bytes its client never took
    (a plain close would keep them, and the socket, until the client reads or times out)."""
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    transport.abort()  # type: ignore[attr-defined]
