"""Model listing per key scope, and the key lifecycle as a client sees it."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.support.server import LiveServer

LOCAL = "llama3.3-70b-instruct"
HELLO = [{"role": "user", "content": "hello"}]


def sdk(live_server: LiveServer, key: str) -> OpenAI:
    return OpenAI(base_url=live_server.openai_base, api_key=key, max_retries=0)


def test_models_list_shape_and_retrieve(client: OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert {"smollm2-135m-instruct", LOCAL, "fake-echo"} <= set(ids)
    assert all(m.object == "model" and m.owned_by and m.created > 0 for m in models.data)
    assert client.models.retrieve(LOCAL).id == LOCAL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-9")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_scoped_key_lists_only_its_models(live_server: LiveServer) -> None:
    _, secret = live_server.create_key("scoped-list", models=["fake-echo", LOCAL])
    ids = sorted(m.id for m in sdk(live_server, secret).models.list().data)
    assert ids == sorted(["fake-echo", LOCAL])
    with pytest.raises(openai.NotFoundError):
        sdk(live_server, secret).models.retrieve("smollm2-135m-instruct")


def test_regenerate_kills_the_old_secret_on_the_very_next_request(live_server: LiveServer) -> None:
    uuid, old = live_server.create_key("rotating")
    assert sdk(live_server, old).chat.completions.create(model="fake-echo", messages=HELLO).choices
    status, body = live_server.control("PUT", f"/v2/gen-ai/models/api_keys/{uuid}/regenerate")
    assert status == 200
    new = body["api_key_info"]["secret_key"]
    assert new != old
    with pytest.raises(openai.AuthenticationError):
        sdk(live_server, old).chat.completions.create(model="fake-echo", messages=HELLO)
    assert sdk(live_server, new).chat.completions.create(model="fake-echo", messages=HELLO).choices


def test_deleted_key_fails_at_once(live_server: LiveServer) -> None:
    uuid, secret = live_server.create_key("doomed")
    assert sdk(live_server, secret).models.list().data
    status, body = live_server.control("DELETE", f"/v2/gen-ai/models/api_keys/{uuid}")
    assert status == 200 and body["api_key_info"]["deleted_at"]
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(live_server, secret).models.list()
    assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_secret_never_listed(live_server: LiveServer) -> None:
    uuid, secret = live_server.create_key("listed")
    status, body = live_server.control("GET", "/v2/gen-ai/models/api_keys?per_page=100")
    assert status == 200
    assert secret not in str(body)
    info = next(i for i in body["api_key_infos"] if i["uuid"] == uuid)
    assert "secret_key" not in info and info["last4"] == secret[-4:]


def test_model_key_is_refused_by_the_control_api(live_server: LiveServer, model_key: str) -> None:
    status, body = live_server.control("GET", "/v2/gen-ai/models/api_keys", token=model_key)
    assert status in (401, 403)
    assert body["error"]["type"] in ("authentication_error", "permission_error")
