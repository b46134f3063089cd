"""Every bad input gets the right status in the OpenAI envelope, leaves no row, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

from tests.support.http import Reply, post_json, request
from tests.support.server import LiveServer

LOCAL = "llama3.3-70b-instruct"
GOOD = {"model": "fake-echo", "messages": [{"role": "user", "content": "hi"}]}


def assert_error(reply: Reply, status: int, code: str, param: str | None = None) -> None:
    assert reply.status == status, reply.body
    error = reply.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error


def assert_no_usage_row(server: LiveServer, chat_url: str, key: str, request_id: str) -> None:
    """The ledger writes in order, so once a later request's row is in, an earlier row would be too."""
    later = post_json(chat_url, GOOD, key)
    assert later.status == 200
    server.wait_usage(later.headers["x-request-id"])
    assert server.usage_rows(request_id=request_id) == []


@pytest.fixture()
def chat_url(live_server: LiveServer) -> str:
    return live_server.openai_base + "/chat/completions"


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        ([], "invalid_request_body", None),
        ({"model": LOCAL, "messages": "hello"}, "invalid_value", "messages"),
        ({"model": LOCAL, "messages": []}, "invalid_value", "messages"),
        ({"model": LOCAL}, "invalid_value", "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "invalid_value", "model"),
        ({**GOOD, "max_tokens": -1}, "invalid_value", "max_tokens"),
        ({**GOOD, "max_tokens": "10"}, "invalid_value", "max_tokens"),
        ({**GOOD, "temperature": 5}, "invalid_value", "temperature"),
        ({**GOOD, "top_p": 1.5}, "invalid_value", "top_p"),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "invalid_value", "stop"),
        ({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, "invalid_value", "messages[0].role"),
        ({**GOOD, "frequency_penalty": 3}, "invalid_value", "frequency_penalty"),
        ({**GOOD, "stream": "yes"}, "invalid_value", "stream"),
        ({**GOOD, "teleport": True}, "unsupported_parameter", "teleport"),
    ],
)
def test_bad_bodies_are_400(
    chat_url: str, model_key: str, live_server: LiveServer, payload: object, code: str, param: str | None
) -> None:
    reply = post_json(chat_url, payload, model_key)
    assert_error(reply, 400, code, param)
    assert_no_usage_row(live_server, chat_url, model_key, reply.headers["x-request-id"])


def test_no_body_and_invalid_json(chat_url: str, model_key: str) -> None:
    assert_error(request("POST", chat_url, None, model_key), 400, "invalid_request_body")
    assert_error(request("POST", chat_url, b"{not json", model_key), 400, "invalid_json")


def test_ten_megabyte_body_is_413(chat_url: str, model_key: str) -> None:
    huge = json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * 10_000_000}]}).encode()
    assert_error(request("POST", chat_url, huge, model_key), 413, "request_too_large")


def test_unknown_model_is_404_never_a_substitute(chat_url: str, model_key: str) -> None:
    reply = post_json(chat_url, {**GOOD, "model": "gpt-9"}, model_key)
    assert_error(reply, 404, "model_not_found", "model")
    assert reply.body["error"]["message"] == "The model 'gpt-9' does not exist"


def test_missing_malformed_and_typo_keys_are_401(chat_url: str, model_key: str, live_server: LiveServer) -> None:
    assert_error(post_json(chat_url, GOOD, None), 401, "invalid_api_key")
    assert_error(post_json(chat_url, GOOD, "not-a-key"), 401, "invalid_api_key")
    typo = model_key[:-3] + ("A" if model_key[-3] != "A" else "B") + model_key[-2:]
    assert_error(post_json(chat_url, GOOD, typo), 401, "invalid_api_key")
    assert_error(request("GET", live_server.openai_base + "/models", token=typo), 401, "invalid_api_key")


def test_admin_token_is_refused_on_the_data_plane(chat_url: str, live_server: LiveServer) -> None:
    assert_error(post_json(chat_url, GOOD, live_server.admin_token), 401, "invalid_api_key")


def test_model_outside_key_scope_is_404_like_an_unknown_one(chat_url: str, live_server: LiveServer) -> None:
    """No existence oracle: a scoped key cannot tell a hidden model from one that does not exist."""
    _, scoped = live_server.create_key("scoped", models=["fake-echo"])
    assert post_json(chat_url, GOOD, scoped).status == 200
    hidden = post_json(chat_url, {**GOOD, "model": LOCAL}, scoped)
    absent = post_json(chat_url, {**GOOD, "model": "no-such-model"}, scoped)
    assert_error(hidden, 404, "model_not_found", "model")
    assert_error(absent, 404, "model_not_found", "model")
    assert hidden.body["error"]["message"].replace(LOCAL, "M") == absent.body["error"]["message"].replace(
        "no-such-model", "M"
    )


def test_unknown_routes_and_methods_use_the_envelope(live_server: LiveServer, model_key: str) -> None:
    assert_error(request("GET", live_server.base_url + "/v1/nothing", token=model_key), 404, "not_found")
    assert_error(request("DELETE", live_server.openai_base + "/chat/completions", token=model_key), 405,
                 "method_not_allowed")  # fmt: skip


def test_server_still_serves_after_bad_input(chat_url: str, model_key: str) -> None:
    reply = post_json(chat_url, GOOD, model_key)
    assert reply.status == 200
    assert reply.body["choices"][0]["message"]["content"] == "hi"
