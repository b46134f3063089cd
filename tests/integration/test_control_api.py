"""The /v2/gen-ai control API against a live gateway: shapes, auth between the planes, usage."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from slipstream.auth import keys
from slipstream.ledger.pricing import format_usd
from tests.support.server import LiveServer

KEYS = "/v2/gen-ai/models/api_keys"
INFO_FIELDS = {"uuid", "name", "created_at", "created_by", "deleted_at", "models", "prefix", "last4", "last_used_at"}


def chat(server: LiveServer, key: str, model: str = "fake-echo") -> tuple[int, str, Any]:
    """One non-streaming chat call; (status, request id, body)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    req = urllib.request.Request(server.openai_base + "/chat/completions", data=json.dumps(body).encode())
    req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers["x-request-id"], json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers["x-request-id"], json.loads(err.read())


def test_key_lifecycle_shapes(live_server: LiveServer) -> None:
    status, body = live_server.control("POST", KEYS, {"name": "lifecycle", "models": ["fake-echo"]})
    assert status == 200 and set(body) == {"api_key_info"}
    info = body["api_key_info"]
    assert set(info) == INFO_FIELDS | {"secret_key"}
    uuid, secret = info["uuid"], info["secret_key"]
    assert keys.looks_valid(secret) and info["models"] == ["fake-echo"] and info["deleted_at"] is None

    status, body = live_server.control("GET", f"{KEYS}/{uuid}")
    assert status == 200 and set(body["api_key_info"]) == INFO_FIELDS

    status, body = live_server.control("PUT", f"{KEYS}/{uuid}", {"api_key_uuid": uuid, "name": "renamed"})
    assert status == 200 and body["api_key_info"]["name"] == "renamed"

    status, body = live_server.control("PUT", f"{KEYS}/{uuid}/regenerate")
    assert status == 200 and body["api_key_info"]["secret_key"] not in (None, secret)

    status, body = live_server.control("DELETE", f"{KEYS}/{uuid}")
    assert status == 200 and body["api_key_info"]["deleted_at"].endswith("Z")
    status, body = live_server.control("DELETE", f"{KEYS}/{uuid}")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_list_is_paginated_with_links(live_server: LiveServer) -> None:
    for i in range(3):
        live_server.create_key(f"page-{i}")
    status, body = live_server.control("GET", f"{KEYS}?page=1&per_page=2")
    assert status == 200
    assert len(body["api_key_infos"]) == 2
    meta = body["meta"]
    assert meta["page"] == 1 and meta["total"] >= 3 and meta["pages"] == -(-meta["total"] // 2)
    assert body["links"]["pages"]["next"].endswith(f"{KEYS}?page=2&per_page=2")
    assert body["links"]["pages"]["next"].startswith(live_server.base_url)


def test_the_planes_refuse_each_others_credentials(live_server: LiveServer, model_key: str) -> None:
    status, body = live_server.control("GET", KEYS, token=model_key)
    assert status == 403 and body["error"]["code"] == "admin_token_required"
    status, _, body = chat(live_server, live_server.admin_token)
    assert status == 401 and "admin token" in body["error"]["message"]
    status, body = live_server.control("GET", KEYS, token=keys.generate_admin_token())
    assert status == 401 and body["error"]["type"] == "authentication_error"


def test_a_typo_in_a_key_is_refused(live_server: LiveServer, model_key: str) -> None:
    typo = model_key[:-7] + ("A" if model_key[-7] != "A" else "B") + model_key[-6:]
    status, _, body = chat(live_server, typo)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_body_validation(live_server: LiveServer) -> None:
    status, body = live_server.control("POST", KEYS, {"name": "x", "scopes": ["all"]})
    assert status == 400 and body["error"]["param"] == "scopes"
    status, body = live_server.control("POST", KEYS, {"name": "x", "models": ["gpt-9"]})
    assert status == 400 and body["error"]["param"] == "models" and "gpt-9" in body["error"]["message"]
    req = urllib.request.Request(live_server.base_url + KEYS, data=b"{oops", method="POST")
    req.add_header("Authorization", f"Bearer {live_server.admin_token}")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("invalid JSON was accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400 and json.loads(err.read())["error"]["code"] == "invalid_json"


def test_models_and_regions(live_server: LiveServer) -> None:
    status, body = live_server.control("GET", "/v2/gen-ai/models")
    assert status == 200 and body["meta"]["total"] == len(body["models"])
    echo = next(m for m in body["models"] if m["id"] == "fake-echo")
    assert echo["prices"] == {"input": "1", "cached_input": "1", "output": "2"}
    assert {"id", "provider", "owned_by", "region", "context_length", "prices"} == set(echo)
    status, body = live_server.control("GET", "/v2/gen-ai/regions")
    assert status == 200
    (region,) = body["regions"]
    assert region["inference_url"] == live_server.base_url and region["serves_inference"] is True


def test_usage_report_matches_the_ledger(live_server: LiveServer) -> None:
    uuid, secret = live_server.create_key("billed")
    ids = []
    for _ in range(2):
        status, request_id, _ = chat(live_server, secret)
        assert status == 200
        ids.append(request_id)
    rows = [live_server.wait_usage(rid) for rid in ids]
    status, body = live_server.control("GET", "/v2/gen-ai/usage?by=key")
    assert status == 200
    mine = next(r for r in body["usage"] if r["key_uuid"] == uuid)
    assert mine["key_name"] == "billed" and mine["requests"] == 2
    assert mine["prompt_tokens"] == sum(r["prompt_tokens"] for r in rows)
    assert mine["cost"] == format_usd(sum(r["cost_picousd"] for r in rows))
    status, body = live_server.control("GET", "/v2/gen-ai/usage?by=day&since=2999-01-01")
    assert status == 200 and body == {"usage": []}


def test_last_used_at_follows_use(live_server: LiveServer) -> None:
    uuid, secret = live_server.create_key("used")
    _, body = live_server.control("GET", f"{KEYS}/{uuid}")
    assert body["api_key_info"]["last_used_at"] is None
    before = time.time()
    assert chat(live_server, secret)[0] == 200
    _, body = live_server.control("GET", f"{KEYS}/{uuid}")
    assert body["api_key_info"]["last_used_at"] is not None
    assert before - 1 < _epoch(body["api_key_info"]["last_used_at"]) < time.time() + 1


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
