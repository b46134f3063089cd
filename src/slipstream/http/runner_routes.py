"""Admin view of the local engine: what ``slipstream models ps`` shows."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from slipstream.http.auth import require_admin
from slipstream.http.responses import json_response
from slipstream.services import Services


def build_runner_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/v2/gen-ai")

    @router.get("/runners")
    async def list_runners(request: Request) -> Response:
        await require_admin(request, services)
        rows = await services.supervisor.status()
        return json_response({"runners": rows, "links": {}, "meta": {"total": len(rows)}})

    return router
