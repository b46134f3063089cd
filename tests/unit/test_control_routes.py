"""The /v2/gen-ai router in-process (driven straight through ASGI): auth, shapes, validation, paging."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from slipstream.auth import keys
from slipstream.auth.admin import AdminAuth
from slipstream.auth.service import KeyService
from slipstream.catalog import Catalog, ModelEntry, Prices
from slipstream.config import Settings
from slipstream.errors import SlipstreamError
from slipstream.http.app import error_response
from slipstream.http.control_routes import build_control_router
from slipstream.ledger.recorder import UsageRecorder
from slipstream.ledger.records import UsageRecord
from slipstream.services import Services
from slipstream.store.db import Database
from tests.unit.databases import backends, fresh_database

SECRET = secrets.token_bytes(32)
KEYS = "/v2/gen-ai/models/api_keys"


@dataclass
class ControlServices:
    """Just the parts of Services the control router uses."""

    settings: Settings
    catalog: Catalog
    db: Database
    keys: KeyService
    admin: AdminAuth
    recorder: UsageRecorder


@dataclass
class Harness:
    app: FastAPI
    token: str
    services: ControlServices

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = "admin", raw: bytes | None = None
    ) -> tuple[int, Any]:
        bearer = self.token if token == "admin" else token
        headers = [(b"host", b"gateway.test")]
        if bearer is not None:
            headers.append((b"authorization", f"Bearer {bearer}".encode()))
        payload = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000), "server": ("gateway.test", 80),
        }  # fmt: skip
        sent: list[MutableMapping[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        body_bytes = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, json.loads(body_bytes) if body_bytes else None


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SlipstreamError)
    return error_response(exc)


@pytest.fixture(params=backends())
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
async def harness(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.delenv("SLIPSTREAM_ADMIN_TOKEN", raising=False)
    admin, token = await AdminAuth.ensure(db, SECRET)
    assert token is not None
    catalog = Catalog(
        [
            ModelEntry(id="fake-a", provider="fake", prices=Prices(input=Decimal("0.5"), output=Decimal("1.5"))),
            ModelEntry(id="fake-b", provider="fake", region="eu", context_length=4096),
        ]
    )
    settings = Settings(data_dir=tmp_path, port=9999, region="local")
    services = ControlServices(settings, catalog, db, KeyService(db, SECRET), admin, UsageRecorder(db))
    app = FastAPI()
    app.add_exception_handler(SlipstreamError, _on_error)
    app.include_router(build_control_router(cast(Services, services)))
    yield Harness(app, token, services)
    await services.recorder.aclose()


async def test_create_shape(harness: Harness) -> None:
    status, body = await harness.call("POST", KEYS, {"name": "my-app"})
    assert status == 200
    info = body["api_key_info"]
    assert {"uuid", "name", "created_at", "created_by", "deleted_at", "secret_key"} <= set(info)
    assert info["name"] == "my-app" and info["created_by"] == "admin" and info["deleted_at"] is None
    assert info["created_at"].endswith("Z") and info["models"] is None
    assert keys.looks_valid(info["secret_key"])
    assert info["prefix"] == info["secret_key"][:12] and info["last4"] == info["secret_key"][-4:]


async def test_auth_is_required_and_model_keys_are_refused(harness: Harness) -> None:
    status, body = await harness.call("GET", KEYS, token=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body = await harness.call("GET", KEYS, token=keys.generate_admin_token())
    assert status == 401
    _, created = await harness.call("POST", KEYS, {"name": "k"})
    status, body = await harness.call("GET", KEYS, token=created["api_key_info"]["secret_key"])
    assert status == 403
    assert "model access keys cannot use the control api" in body["error"]["message"].lower()


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [
        (b"{nope", None, "invalid_json"),
        (b"", None, "invalid_request_body"),
        (b'{"name": "x", "colour": "red"}', "colour", "unknown_parameter"),
        (b'{"name": ""}', "name", "invalid_value"),
        (b'{"name": 5}', "name", "invalid_value"),
        (b'{"name": "x", "models": "fake-a"}', "models", "invalid_value"),
        (b'{"name": "x", "models": ["fake-a", "gpt-9"]}', "models", "invalid_value"),
        (b"[1, 2]", None, "invalid_value"),
    ],
)
async def test_create_validation(harness: Harness, raw: bytes, param: str | None, code: str) -> None:
    status, body = await harness.call("POST", KEYS, raw=raw)
    assert status == 400, body
    assert body["error"]["param"] == param and body["error"]["code"] == code


async def test_unknown_model_is_named(harness: Harness) -> None:
    _, body = await harness.call("POST", KEYS, {"name": "x", "models": ["fake-a", "gpt-9"]})
    assert "gpt-9" in body["error"]["message"] and "fake-a" not in body["error"]["message"]


async def test_list_pagination(harness: Harness) -> None:
    for i in range(5):
        await harness.call("POST", KEYS, {"name": f"k{i}"})
    status, body = await harness.call("GET", KEYS + "?page=2&per_page=2")
    assert status == 200
    assert [i["name"] for i in body["api_key_infos"]] == ["k2", "k1"]
    assert all("secret_key" not in i for i in body["api_key_infos"])
    assert body["meta"] == {"total": 5, "page": 2, "pages": 3}
    pages = body["links"]["pages"]
    assert pages == {
        "first": f"http://gateway.test{KEYS}?page=1&per_page=2",
        "prev": f"http://gateway.test{KEYS}?page=1&per_page=2",
        "next": f"http://gateway.test{KEYS}?page=3&per_page=2",
        "last": f"http://gateway.test{KEYS}?page=3&per_page=2",
    }
    _, first = await harness.call("GET", KEYS + "?per_page=2")
    assert set(first["links"]["pages"]) == {"next", "last"} and first["meta"]["page"] == 1
    _, single = await harness.call("GET", KEYS)
    assert single["links"]["pages"] == {} and single["meta"] == {"total": 5, "page": 1, "pages": 1}
    status, bad = await harness.call("GET", KEYS + "?page=zero")
    assert status == 400 and bad["error"]["param"] == "page"


async def test_get_update_regenerate_delete(harness: Harness) -> None:
    _, created = await harness.call("POST", KEYS, {"name": "life"})
    uuid, old = created["api_key_info"]["uuid"], created["api_key_info"]["secret_key"]

    status, got = await harness.call("GET", f"{KEYS}/{uuid}")
    assert status == 200 and got["api_key_info"]["uuid"] == uuid and "secret_key" not in got["api_key_info"]

    status, upd = await harness.call("PUT", f"{KEYS}/{uuid}", {"api_key_uuid": uuid, "name": "renamed"})
    assert status == 200 and upd["api_key_info"]["name"] == "renamed"
    status, upd = await harness.call("PUT", f"{KEYS}/{uuid}", {"models": ["fake-b"]})
    assert upd["api_key_info"]["models"] == ["fake-b"] and upd["api_key_info"]["name"] == "renamed"
    status, upd = await harness.call("PUT", f"{KEYS}/{uuid}", {"models": None})
    assert upd["api_key_info"]["models"] is None
    status, mismatch = await harness.call("PUT", f"{KEYS}/{uuid}", {"api_key_uuid": "other", "name": "x"})
    assert status == 400 and mismatch["error"]["param"] == "api_key_uuid"
    status, null_name = await harness.call("PUT", f"{KEYS}/{uuid}", {"name": None})
    assert status == 400 and null_name["error"]["param"] == "name"

    status, regen = await harness.call("PUT", f"{KEYS}/{uuid}/regenerate")
    new = regen["api_key_info"]["secret_key"]
    assert status == 200 and new != old and keys.looks_valid(new)
    assert (await harness.services.keys.authenticate(new)).key_uuid == uuid

    status, deleted = await harness.call("DELETE", f"{KEYS}/{uuid}")
    assert status == 200 and deleted["api_key_info"]["deleted_at"].endswith("Z")
    for method, path in [("GET", f"{KEYS}/{uuid}"), ("DELETE", f"{KEYS}/{uuid}"), ("PUT", f"{KEYS}/{uuid}/regenerate")]:
        status, missing = await harness.call(method, path)
        assert status == 404 and missing["error"]["code"] == "not_found", (method, path)


async def test_models_and_regions(harness: Harness) -> None:
    status, body = await harness.call("GET", "/v2/gen-ai/models")
    assert status == 200 and body["meta"] == {"total": 2}
    a = body["models"][0]
    assert a == {
        "id": "fake-a", "provider": "fake", "owned_by": "slipstream", "region": "local", "context_length": 8192,
        "prices": {"input": "0.5", "cached_input": "0.5", "output": "1.5"},
    }  # fmt: skip
    status, body = await harness.call("GET", "/v2/gen-ai/regions")
    assert body == {
        "regions": [
            {
                "region": "local",
                "inference_url": "http://127.0.0.1:9999",
                "stream_inference_url": "http://127.0.0.1:9999",
                "serves_inference": True,
                "serves_batch": False,
            }
        ]
    }


async def test_usage(harness: Harness) -> None:
    recorder = harness.services.recorder
    recorder.record(UsageRecord("r1", "u1", "alice", "fake-a", "fake", 10, 0, 5, 2_000_000))
    recorder.record(UsageRecord("r2", "u1", "alice", "fake-b", "fake", 1, 0, 1, 3))
    await recorder.flush()
    status, body = await harness.call("GET", "/v2/gen-ai/usage?by=model")
    assert status == 200
    assert [(r["model"], r["cost"]) for r in body["usage"]] == [("fake-a", "0.000002"), ("fake-b", "0.000000000003")]
    status, body = await harness.call("GET", "/v2/gen-ai/usage")
    assert [r["key_name"] for r in body["usage"]] == ["alice"]
    status, body = await harness.call("GET", "/v2/gen-ai/usage?by=week")
    assert status == 400 and body["error"]["param"] == "by"
    status, body = await harness.call("GET", "/v2/gen-ai/usage?since=yesterday")
    assert status == 400 and body["error"]["param"] == "since"
    status, body = await harness.call("GET", "/v2/gen-ai/usage?since=2999-01-01")
    assert status == 200 and body == {"usage": []}
