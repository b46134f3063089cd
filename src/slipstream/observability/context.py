"""The current request's id, for log lines written far from the HTTP layer (providers, upstreams).

A context variable rather than a parameter threaded through every call: the middleware sets it
once per request, and each request runs in its own task, so concurrent requests never mix.
"""

from __future__ import annotations

from contextvars import ContextVar

_REQUEST_ID: ContextVar[str] = ContextVar("slipstream_request_id", default="-")


def set_request_id(request_id: str) -> None:
    _REQUEST_ID.set(request_id)


def current_request_id() -> str:
    """The id of the request being served, or ``-`` outside one."""
    return _REQUEST_ID.get()
