"""A small client of the control API on stdlib ``urllib`` (so the CLI starts fast), and shared options."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from enum import StrEnum
from typing import Annotated, Any

import typer

DEFAULT_API_URL = "http://127.0.0.1:8080"


class Output(StrEnum):
    table = "table"
    json = "json"


ApiUrlOption = Annotated[
    str, typer.Option("--api-url", envvar="SLIPSTREAM_API_URL", help="Base URL of the Slipstream server.")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="SLIPSTREAM_ADMIN_TOKEN",
        help="Admin token (default: $SLIPSTREAM_ADMIN_TOKEN).",
        show_default=False,
        show_envvar=False,
    ),
]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table or json.")]


class ApiError(Exception):
    """An error to show as ``Error: <message> (<code>)``."""

    def __init__(self, message: str, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are never followed: urllib would re-send the admin token to wherever they point,
    another host included. The 3xx then surfaces as an ``HTTPError`` that says where it pointed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ControlClient:
    def __init__(self, api_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token or os.environ.get("SLIPSTREAM_ADMIN_TOKEN")
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer, or ``ApiError`` carrying the server's message and code."""
        if not self._token:
            raise ApiError("no admin token: set SLIPSTREAM_ADMIN_TOKEN or pass --token", "missing_token")
        url = self.api_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            if 300 <= err.code < 400:
                raise _redirected(err) from None
            raise _from_http_error(err) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(f"cannot reach {self.api_url}: {reason}", "connection_error") from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(f"{url} did not answer with JSON", "invalid_response") from None


def _redirected(err: urllib.error.HTTPError) -> ApiError:
    where = err.headers.get("Location") or "nowhere"
    return ApiError(
        f"the server answered {err.code} redirecting to {where!r}; redirects are not followed, so that the "
        "admin token never goes to another address: pass the final URL as --api-url",
        "redirect_not_followed",
        err.code,
    )


def _from_http_error(err: urllib.error.HTTPError) -> ApiError:
    try:
        envelope = json.loads(err.read())
        detail = envelope["error"]
        return ApiError(str(detail["message"]), str(detail.get("code") or detail.get("type")), err.code)
    except (ValueError, KeyError, TypeError):
        return ApiError(f"HTTP {err.code} {err.reason}", f"http_{err.code}", err.code)
