"""An upstream that reports impossible or malformed usage costs no usage row and crashes nothing.

Before, more cached than prompt tokens made a metrics counter raise after the meter was marked
finished: a 500 (or an error event mid-stream), no row, and the metrics said ``ok``.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.support.http import request
from tests.support.server import LiveServer, run_server

OVER, MALFORMED = "cached-over-prompt", "malformed-usage"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream_port: int) -> Iterator[tuple[LiveServer, str]]:
    root = tmp_path_factory.mktemp("usage")
    config = root / "slipstream.yaml"
    base = f"http://127.0.0.1:{upstream_port}/v1"
    config.write_text(
        "include_builtin_models: false\nmodels:\n"
        f"  - {{id: {OVER}, provider: openai_compatible, base_url: '{base}',"
        " upstream_model: usage-cached-over-prompt, prices: {input: '1', cached_input: '0.5', output: '2'}}\n"
        f"  - {{id: {MALFORMED}, provider: openai_compatible, base_url: '{base}',"
        " upstream_model: usage-malformed}\n"
    )
    with run_server(root / "data", config) as server:
        yield server, server.create_key("usage")[1]


def chat(server: LiveServer, key: str, model: str, stream: bool) -> tuple[int, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    reply = request("POST", server.openai_base + "/chat/completions", orjson.dumps(body), key)
    raw = reply.body.encode() if isinstance(reply.body, str) else orjson.dumps(reply.body)
    return reply.status, raw


def request_id(raw: bytes, stream: bool) -> str:
    first = raw.split(b"\n", 1)[0].removeprefix(b"data: ") if stream else raw
    return str(orjson.loads(first)["id"]).removeprefix("chatcmpl-")


@pytest.mark.parametrize("stream", [False, True])
def test_more_cached_than_prompt_tokens_is_billed_with_cached_cut_to_the_prompt(
    gateway: tuple[LiveServer, str], stream: bool
) -> None:
    server, key = gateway
    status, raw = chat(server, key, OVER, stream)
    assert status == 200, raw
    if stream:
        assert raw.endswith(b"data: [DONE]\n\n"), raw
    row = server.wait_usage(request_id(raw, stream))
    assert (row["status"], row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == ("ok", 13, 13, 7)
    assert row["cost_picousd"] == 13 * 500_000 + 7 * 2_000_000  # every prompt token at the cached price


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_usage_is_an_upstream_error_with_its_row(gateway: tuple[LiveServer, str], stream: bool) -> None:
    server, key = gateway
    status, raw = chat(server, key, MALFORMED, stream)
    if stream:
        assert status == 200
        events = [line.removeprefix(b"data: ") for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
        error = orjson.loads(events[-1])["error"]
        rid = request_id(raw, stream) if not events[0].startswith(b'{"error"') else None
    else:
        assert status == 502, raw
        error = orjson.loads(raw)["error"]
        rid = None
    assert (error["type"], error["code"]) == ("server_error", "upstream_error")
    assert "lots" not in error["message"]
    if rid is not None:
        row = server.wait_usage(rid)
        assert (row["status"], row["http_status"], row["error_code"]) == ("error", 502, "upstream_error")
    else:
        rows = server.usage_rows(model=MALFORMED, http_status=502)
        assert rows and all(r["error_code"] == "upstream_error" for r in rows)
