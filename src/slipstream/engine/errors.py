"""Runner errors, each carrying its HTTP status and OpenAI envelope fields.

The gateway maps these straight through, so the shape must be exactly OpenAI's.
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """An error the runner reports to its client in the OpenAI envelope."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(param: str | None, message: str, code: str = "invalid_value") -> EngineError:
    return EngineError(message, param=param, code=code)


def unsupported(param: str, message: str | None = None) -> EngineError:
    return EngineError(
        message or f"Unsupported parameter: '{param}' is not supported by this model server.",
        param=param,
        code="unsupported_parameter",
    )


def overloaded() -> EngineError:
    return EngineError(
        "All slots are busy and the request queue is full; retry shortly.",
        status=429,
        type="rate_limit_error",
        code="rate_limit_exceeded",
    )


def internal(message: str) -> EngineError:
    return EngineError(message, status=500, type="server_error", code="internal_error")
