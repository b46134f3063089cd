"""The exception tree, and its single mapping onto the OpenAI error envelope.

Every failure a client can see is one of these; the HTTP layer turns any of them
into ``{"error": {"message", "type", "param", "code"}}`` with the right status.

    SlipstreamError (500 server_error / internal_error)
    ├── InvalidRequest          400 invalid_request_error   (invalid_value, unsupported_parameter, ...)
    │   └── ContextLengthExceeded 400                        context_length_exceeded
    ├── AuthenticationFailed    401 authentication_error    invalid_api_key
    ├── PermissionDenied        403 permission_error        model_not_allowed
    ├── NotFound                404 invalid_request_error   not_found
    │   └── ModelNotFound       404                         model_not_found
    ├── MethodNotAllowed        405 invalid_request_error   method_not_allowed
    ├── RequestTimeout          408 invalid_request_error   request_timeout
    ├── Conflict                409 invalid_request_error   conflict
    ├── RequestTooLarge         413 invalid_request_error   request_too_large
    ├── RateLimited             429 rate_limit_error        rate_limit_exceeded  (Retry-After)
    ├── QuotaExceeded           429 insufficient_quota      insufficient_quota
    ├── HeadersTooLarge         431 invalid_request_error   request_header_fields_too_large
    ├── UpstreamError           502 server_error            upstream_error
    ├── ModelUnavailable        503 server_error            model_unavailable    (Retry-After)
    └── ServerOverloaded        503 server_error            server_overloaded    (Retry-After)
        ├── TooManyConnections      too many open connections (http.max_concurrency)
        ├── LedgerUnavailable       the usage ledger cannot record a request now
        └── AuthUnavailable         keys cannot be checked against the database now
"""

from __future__ import annotations

from typing import Any, ClassVar


class SlipstreamError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidRequest(SlipstreamError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_value"


class ContextLengthExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class AuthenticationFailed(SlipstreamError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(SlipstreamError):
    status = 403
    type = "permission_error"
    default_code = "model_not_allowed"


class NotFound(SlipstreamError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")


class MethodNotAllowed(SlipstreamError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeout(SlipstreamError):
    """The request's headers or body did not arrive in time (``http.header_timeout_s``, ``body_timeout_s``)."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class Conflict(SlipstreamError):
    status = 409
    type = "invalid_request_error"
    default_code = "conflict"


class RequestTooLarge(SlipstreamError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class HeadersTooLarge(SlipstreamError):
    """The request line and headers exceed ``http.max_header_bytes``."""

    status = 431
    type = "invalid_request_error"
    default_code = "request_header_fields_too_large"


class RateLimited(SlipstreamError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class QuotaExceeded(SlipstreamError):
    status = 429
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class UpstreamError(SlipstreamError):
    status = 502
    default_code = "upstream_error"


class ModelUnavailable(SlipstreamError):
    status = 503
    default_code = "model_unavailable"


class ServerOverloaded(SlipstreamError):
    """The gateway itself cannot take the request now; the client should retry after Retry-After."""

    status = 503
    default_code = "server_overloaded"


class TooManyConnections(ServerOverloaded):
    """The gateway holds ``http.max_concurrency`` connections already."""


class LedgerUnavailable(ServerOverloaded):
    """The usage ledger cannot record a request now, so the request is not served (never unbilled)."""


class AuthUnavailable(ServerOverloaded):
    """Credentials cannot be checked against the database now, and a possibly stale cache is not trusted."""


_BY_STATUS: dict[int, type[SlipstreamError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: RequestTooLarge,
    429: RateLimited,
    502: UpstreamError,
    503: ModelUnavailable,
}


def from_envelope(status: int, body: Any, *, retry_after: int | None = None) -> SlipstreamError:
    """Rebuild an error received from an OpenAI-compatible upstream, keeping its code and param.

    Upstream 5xx become 502 (or 503 when the upstream said so): the failure is theirs, not ours.
    """
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    message = str(err.get("message") or f"upstream answered with status {status}")
    cls = _BY_STATUS.get(status, UpstreamError if status >= 500 else InvalidRequest)
    if cls is RateLimited and err.get("code") == "insufficient_quota":
        cls = QuotaExceeded
    param = err.get("param") if isinstance(err.get("param"), str) else None
    code = err.get("code") if isinstance(err.get("code"), str) else None
    if cls is UpstreamError:
        code = "upstream_error"
    return cls(message, param=param, code=code, retry_after=retry_after)
