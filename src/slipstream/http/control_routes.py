"""The control plane, ``/v2/gen-ai``, in DigitalOcean's GenAI shapes. Admin token only.

Thin like the data plane's routes: check the admin token, parse (pydantic, unknown fields refused),
call the service, encode. Errors are ``slipstream.errors`` exceptions; the app renders them.
"""

from __future__ import annotations

import logging
import math
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from slipstream.auth.service import MAX_PER_PAGE
from slipstream.errors import InvalidRequest
from slipstream.http.auth import require_admin
from slipstream.http.bodies import read_json
from slipstream.http.responses import json_response
from slipstream.ledger.pricing import format_price
from slipstream.ledger.reports import GROUPINGS, usage_report

if TYPE_CHECKING:
    from slipstream.catalog import Catalog, ModelEntry
    from slipstream.services import Services

log = logging.getLogger(__name__)

ADMIN = "admin"
MAX_PAGE = 1_000_000_000  # times MAX_PER_PAGE, still far inside a 64-bit OFFSET
_Body = TypeVar("_Body", bound=BaseModel)


class CreateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    models: list[str] | None = None


class UpdateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key_uuid: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=128)
    models: list[str] | None = None


async def _parse(request: Request, model: type[_Body], limit: int, *, allow_empty: bool = False) -> _Body:
    data = await read_json(request, limit, allow_empty=allow_empty)
    if data is None:
        return model()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request field '{param}'.", param=param, code="unknown_parameter")
    if param is None:
        return InvalidRequest(f"The request body must be a JSON object: {first['msg']}.")
    return InvalidRequest(f"Invalid value for '{param}': {first['msg']}.", param=param)


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi], or a 400 naming it (never clamped: a client
    asking for page 10**20 has a bug to see, and an unbounded offset overflowed the database)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise InvalidRequest(f"'{name}' must be an integer from {lo} to {hi}, not {raw[:40]!r}.", param=name)
    return value


def _check_models(catalog: Catalog, models: list[str] | None) -> None:
    unknown = [m for m in models or [] if m not in catalog]
    if unknown:
        raise InvalidRequest(f"Unknown model id(s): {', '.join(unknown)}.", param="models")


def _model_info(entry: ModelEntry) -> dict[str, Any]:
    prices = entry.prices
    return {
        "id": entry.id,
        "provider": entry.provider,
        "owned_by": entry.owned_by,
        "region": entry.region,
        "context_length": entry.context_length,
        "prices": {
            "input": format_price(prices.input),
            "cached_input": format_price(prices.effective_cached_input),
            "output": format_price(prices.output),
        },
    }


def _page_links(base: str, page: int, pages: int, per_page: int) -> dict[str, str]:
    def url(p: int) -> str:
        return f"{base}?page={p}&per_page={per_page}"

    links: dict[str, str] = {}
    if page > 1:
        links["first"] = url(1)
        links["prev"] = url(min(page - 1, pages))
    if page < pages:
        links["next"] = url(page + 1)
        links["last"] = url(pages)
    return links


def build_control_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/v2/gen-ai")
    limit = services.settings.max_body_bytes

    async def admin(request: Request) -> str:
        """Refuses anything but the admin token; returns the caller's name for ``created_by``."""
        await require_admin(request, services)
        return ADMIN

    @router.post("/models/api_keys")
    async def create_key(request: Request) -> Response:
        who = await admin(request)
        body = await _parse(request, CreateKeyBody, limit)
        _check_models(services.catalog, body.models)
        info, secret = await services.keys.create(body.name, body.models, created_by=who)
        log.info("model access key %s (%s) created by %s", info.uuid, info.name, who)
        return json_response({"api_key_info": info.to_api(secret)})

    @router.get("/models/api_keys")
    async def list_keys(request: Request) -> Response:
        await admin(request)
        page = _query_int(request, "page", 1, 1, MAX_PAGE)
        per_page = _query_int(request, "per_page", 20, 1, MAX_PER_PAGE)
        infos, total = await services.keys.list(page, per_page)
        pages = max(1, math.ceil(total / per_page))
        base = (services.settings.public_url or str(request.base_url)).rstrip("/") + request.url.path
        return json_response(
            {
                "api_key_infos": [info.to_api() for info in infos],
                "links": {"pages": _page_links(base, page, pages, per_page)},
                "meta": {"total": total, "page": page, "pages": pages},
            }
        )

    @router.get("/models/api_keys/{uuid}")
    async def get_key(request: Request, uuid: str) -> Response:
        await admin(request)
        return json_response({"api_key_info": (await services.keys.get(uuid)).to_api()})

    @router.put("/models/api_keys/{uuid}")
    async def update_key(request: Request, uuid: str) -> Response:
        await admin(request)
        body = await _parse(request, UpdateKeyBody, limit, allow_empty=True)
        if body.api_key_uuid is not None and body.api_key_uuid != uuid:
            raise InvalidRequest("'api_key_uuid' in the body does not match the URL.", param="api_key_uuid")
        given = body.model_fields_set
        if "name" in given and body.name is None:
            raise InvalidRequest("'name' cannot be null.", param="name")
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name
        if "models" in given:
            _check_models(services.catalog, body.models)
            changes["models"] = body.models
        info = await services.keys.update(uuid, **changes)
        return json_response({"api_key_info": info.to_api()})

    @router.put("/models/api_keys/{uuid}/regenerate")
    async def regenerate_key(request: Request, uuid: str) -> Response:
        who = await admin(request)
        info, secret = await services.keys.regenerate(uuid)
        log.info("model access key %s (%s) regenerated by %s", info.uuid, info.name, who)
        return json_response({"api_key_info": info.to_api(secret)})

    @router.delete("/models/api_keys/{uuid}")
    async def delete_key(request: Request, uuid: str) -> Response:
        who = await admin(request)
        info = await services.keys.delete(uuid)
        log.info("model access key %s (%s) deleted by %s", info.uuid, info.name, who)
        return json_response({"api_key_info": info.to_api()})

    @router.get("/models")
    async def list_models(request: Request) -> Response:
        await admin(request)
        models = [_model_info(entry) for entry in services.catalog.entries()]
        return json_response({"models": models, "meta": {"total": len(models)}})

    @router.get("/regions")
    async def list_regions(request: Request) -> Response:
        await admin(request)
        settings = services.settings
        region = {
            "region": settings.region,
            "inference_url": settings.base_url,
            "stream_inference_url": settings.base_url,
            "serves_inference": True,
            "serves_batch": False,
        }
        return json_response({"regions": [region]})

    @router.get("/usage")
    async def usage(request: Request) -> Response:
        await admin(request)
        by = request.query_params.get("by") or "key"
        if by not in GROUPINGS:
            raise InvalidRequest(f"'by' must be one of {', '.join(GROUPINGS)}, not {by!r}.", param="by")
        since_raw = request.query_params.get("since")
        try:
            since = date.fromisoformat(since_raw) if since_raw else None
        except ValueError:
            raise InvalidRequest(f"'since' must be a date (YYYY-MM-DD), not {since_raw!r}.", param="since") from None
        rows = await usage_report(services.db, by, since)
        return json_response({"usage": rows})

    return router
