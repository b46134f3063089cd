"""The data plane: OpenAI-compatible routes. Thin: parse, call the service, encode.

These are plain Starlette routes rather than FastAPI ones: the hot path needs no dependency
injection, and skipping it saves a measurable share of each request's CPU time.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from slipstream.catalog import ModelEntry
from slipstream.errors import ModelNotFound
from slipstream.http.auth import model_key_principal
from slipstream.http.bodies import read_json
from slipstream.http.lending import lendable_socket
from slipstream.http.lent_stream import LentStreamResponse
from slipstream.http.responses import json_response
from slipstream.protocol.sse import SSE_HEADERS
from slipstream.services import Services
from slipstream.serving.chat import PreparedCall

DROPPED_PARAMS_HEADER = "x-slipstream-dropped-params"  # bookkeeping parameters not passed on


def _model_object(entry: ModelEntry) -> dict[str, Any]:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


def build_openai_routes(services: Services) -> list[Route]:
    async def list_models(request: Request) -> Response:
        principal = await model_key_principal(request, services)
        data = [_model_object(e) for e in services.catalog.entries() if principal.may_use(e.id)]
        return json_response({"object": "list", "data": data})

    async def get_model(request: Request) -> Response:
        principal = await model_key_principal(request, services)
        model_id = request.path_params["model_id"]
        entry = services.catalog.get(model_id)
        if entry is None or not principal.may_use(entry.id):
            raise ModelNotFound(model_id)
        return json_response(_model_object(entry))

    async def chat_completions(request: Request) -> Response:
        principal = await model_key_principal(request, services)
        body = await read_json(request, services.settings.max_body_bytes)
        prepared = services.chat.prepare(principal, body, request.state.request_id)
        response = await _answer(request, prepared)
        if prepared.call.dropped:
            response.headers[DROPPED_PARAMS_HEADER] = ", ".join(prepared.call.dropped)
        return response

    async def _answer(request: Request, prepared: PreparedCall) -> Response:
        if prepared.call.request.wants_stream:
            lendable = lendable_socket(request.scope) if services.settings.engine.lend_client_sockets else None
            if lendable is not None:
                lent = await services.chat.open_lent_stream(prepared)
                if lent is not None:
                    return LentStreamResponse(lent, *lendable)
            stream = await services.chat.open_stream(prepared)
            return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
        return json_response(await services.chat.complete(prepared))

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
