"""What a client may see of an external upstream's failure, and what only the log may see.

An upstream's own words can name its hosts and ports, the operator's organisation or key, or
its internal model names. So a client gets a generic message and the status that tells it
whether to retry; the operator gets the details in the log, under the request id the client
was given in ``x-request-id``. An upstream 401/403 is the operator's provider key being wrong,
not the client's: the client sees 502 ``upstream_error``, never its own ``invalid_api_key``.

Only the faults of the client's own request (400, 413, 422: a context too long, a bad
parameter) keep the upstream's message and param, since the client needs them to fix it.
"""

from __future__ import annotations

import logging
from typing import Any

from yarl import URL

from slipstream.errors import ModelUnavailable, RateLimited, SlipstreamError, UpstreamError, from_envelope
from slipstream.observability.context import current_request_id

log = logging.getLogger(__name__)

FAILED = "The model backend failed; the operator can find the details under this request's x-request-id."
UNREACHABLE = "The model backend is unreachable."
BUSY = "The model backend is busy; retry later."
_CLIENT_FAULTS = frozenset({400, 413, 422})
_DETAIL_CHARS = 500


def shown_url(url: URL) -> str:
    """The upstream URL for the log, without any user or password in it."""
    return str(url.with_user(None))


def upstream_refusal(url: URL, status: int, body: Any, retry_after: int | None) -> SlipstreamError:
    """The error for a non-200 answer from an external upstream; its details go to the log."""
    log.warning("request %s: upstream %s answered %d: %s", current_request_id(), shown_url(url), status, _detail(body))
    if status in _CLIENT_FAULTS:
        return from_envelope(400 if status == 422 else status, body)
    err = body.get("error") if isinstance(body, dict) else None
    quota = isinstance(err, dict) and err.get("code") == "insufficient_quota"  # the operator's account, not theirs
    if status == 429 and not quota:
        return RateLimited(BUSY, retry_after=retry_after)
    if status == 503:
        return ModelUnavailable(BUSY, retry_after=retry_after)
    return UpstreamError(FAILED)


def upstream_failure(url: URL, what: str, exc: BaseException | str) -> None:
    """Log a failure to talk to an upstream (connection, broken stream) with its details."""
    log.warning("request %s: upstream %s %s: %r", current_request_id(), shown_url(url), what, exc)


def _detail(body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    text = err.get("message") if isinstance(err, dict) and err.get("message") else body
    return str(text)[:_DETAIL_CHARS]
