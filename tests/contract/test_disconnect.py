"""A client that goes away mid-stream is billed for what was generated, and generation stops."""

from __future__ import annotations

import time

from openai import OpenAI

from tests.support.server import LiveServer

LOCAL = "llama3.3-70b-instruct"


def test_disconnect_mid_stream_writes_a_cancelled_row_with_tokens_so_far(
    client: OpenAI, live_server: LiveServer
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=LOCAL,
        messages=[{"role": "user", "content": "Write a very long essay about the history of Europe."}],
        max_tokens=400,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        received = 0
        for chunk in response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                received += 1
            if received == 5:
                break
    started = time.monotonic()
    row = live_server.wait_usage(request_id)
    assert time.monotonic() - started < 10
    assert row["status"] == "cancelled"
    assert 5 <= row["completion_tokens"] < 400
    assert row["prompt_tokens"] > 0
    assert row["cost_picousd"] > 0
