"""The app factory. No app exists at import time; each call builds an independent one."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from slipstream import __version__
from slipstream.errors import InvalidRequest, MethodNotAllowed, NotFound, SlipstreamError
from slipstream.http.auth import require_admin
from slipstream.http.control_routes import build_control_router
from slipstream.http.middleware import RequestIdMiddleware
from slipstream.http.openai_routes import build_openai_routes
from slipstream.http.responses import json_response
from slipstream.http.runner_routes import build_runner_router
from slipstream.services import Services

log = logging.getLogger(__name__)


def error_response(exc: SlipstreamError) -> Response:
    response = json_response(exc.envelope(), exc.status)
    response.headers.update(exc.headers())
    return response


async def _on_slipstream_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SlipstreamError)
    if exc.status >= 500:
        log.warning("request %s failed: %s", getattr(request.state, "request_id", "-"), exc.message)
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"Unknown route: {request.method} {request.url.path}"))
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"The method {request.method} is not allowed on {request.url.path}."))
    err = SlipstreamError(str(exc.detail))
    return json_response(err.envelope(), exc.status_code)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first["loc"][1:]) or None
    return error_response(InvalidRequest(f"Invalid value for '{param}': {first['msg']}.", param=param))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in request %s", getattr(request.state, "request_id", "-"))
    return error_response(SlipstreamError("The server had an error while processing your request."))


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="Slipstream", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    app.add_exception_handler(SlipstreamError, _on_slipstream_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if services.settings.metrics_require_admin:
            await require_admin(request, services)
        services.metrics.set_runners(await services.supervisor.status())
        return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.extend(build_openai_routes(services))
    app.include_router(build_control_router(services))
    app.include_router(build_runner_router(services))
    return app
