"""One request contract: the gateway's parameter lists agree with the runner's, and an external
upstream's failure reaches a client only in generic words."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from slipstream.engine.prepare import params as runner_params
from slipstream.errors import InvalidRequest, ModelUnavailable, QuotaExceeded, RateLimited, UpstreamError
from slipstream.protocol.chat import ChatCompletionRequest, parse_chat_request
from slipstream.protocol.contract import BOOKKEEPING_PARAMS, CORE_PARAMS, LOCAL_ACCEPTED, LOCAL_PARAMS
from slipstream.providers.base import Provider
from slipstream.providers.local import LocalProvider
from slipstream.upstream.errors import FAILED, upstream_refusal

HELLO = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
URL_ = URL("http://user:pw@10.0.0.5:8000/v1/chat/completions")


def test_the_gateway_and_the_runner_check_against_one_contract() -> None:
    assert set(ChatCompletionRequest.model_fields) == CORE_PARAMS | BOOKKEEPING_PARAMS
    assert LocalProvider.extra_params == LOCAL_PARAMS
    assert runner_params.LOCAL_ACCEPTED is LOCAL_ACCEPTED
    assert set(ChatCompletionRequest.model_fields) | LocalProvider.extra_params == LOCAL_ACCEPTED


class _Plain(Provider):
    async def complete(self, call: Any) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, call: Any) -> Any:
        raise NotImplementedError


def test_check_refuses_unknown_and_returns_bookkeeping_to_drop() -> None:
    provider = _Plain()
    provider.forwarded_bookkeeping = frozenset({"user"})
    request = parse_chat_request({**HELLO, "store": True, "user": "u", "metadata": None})
    assert provider.check(request) == ("store",)  # user is forwarded, a null metadata is unset
    with pytest.raises(InvalidRequest) as caught:
        provider.check(parse_chat_request({**HELLO, "service_tier": "auto", "top_k": 3}))
    assert caught.value.param == "top_k" and caught.value.code == "unsupported_parameter"


def _body(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "x", "param": None, "code": code}}


@pytest.mark.parametrize("status", [401, 403, 404, 405, 500, 502])
def test_operator_side_failures_are_generic_502s(status: int) -> None:
    err = upstream_refusal(URL_, status, _body("secret host 10.0.0.5:8000", "invalid_api_key"), None)
    assert type(err) is UpstreamError and err.message == FAILED and err.code == "upstream_error"


def test_rate_limits_and_unavailability_keep_their_retry_semantics() -> None:
    limited = upstream_refusal(URL_, 429, _body("org-123 is limited", "rate_limit_exceeded"), 7)
    assert type(limited) is RateLimited and limited.retry_after == 7 and "org-123" not in limited.message
    quota = upstream_refusal(URL_, 429, _body("org-123 has no credit", "insufficient_quota"), None)
    assert type(quota) is UpstreamError and not isinstance(quota, QuotaExceeded)
    busy = upstream_refusal(URL_, 503, _body("pod-7 down"), 3)
    assert type(busy) is ModelUnavailable and busy.retry_after == 3 and "pod-7" not in busy.message


def test_the_clients_own_faults_keep_their_message(caplog: pytest.LogCaptureFixture) -> None:
    err = upstream_refusal(URL_, 400, _body("max context is 2048 tokens", "context_length_exceeded"), None)
    assert isinstance(err, InvalidRequest) and err.message == "max context is 2048 tokens"
    assert "user:pw" not in caplog.text and "10.0.0.5:8000" in caplog.text
