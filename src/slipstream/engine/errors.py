"""Shorthands for the errors the runner reports, built on the project's one exception tree.

The gateway rebuilds them from the envelope, so runner and gateway agree by construction.
"""

from __future__ import annotations

from slipstream.errors import InvalidRequest, RateLimited, SlipstreamError


def invalid(param: str | None, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def unsupported(param: str, message: str | None = None) -> InvalidRequest:
    return InvalidRequest(
        message or f"Unsupported parameter: '{param}' is not supported by this model server.",
        param=param,
        code="unsupported_parameter",
    )


def overloaded() -> RateLimited:
    return RateLimited("All slots are busy and the request queue is full; retry shortly.", retry_after=1)


def internal(message: str) -> SlipstreamError:
    return SlipstreamError(message)
