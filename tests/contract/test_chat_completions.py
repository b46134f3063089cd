"""Chat completions through the official openai SDK against a live gateway and a real runner."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI

from tests.support.server import LiveServer

LOCAL = "llama3.3-70b-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_non_streaming_chat_has_openai_shape_and_exact_usage(client: OpenAI, live_server: LiveServer) -> None:
    raw = client.chat.completions.with_raw_response.create(model=LOCAL, messages=QUESTION, temperature=0, max_tokens=12)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == LOCAL
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 12
    request_id = raw.headers["x-request-id"]
    assert completion.id == f"chatcmpl-{request_id}"
    row = live_server.wait_usage(request_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert row["status"] == "ok" and row["http_status"] == 200 and row["model"] == LOCAL
    assert row["cost_picousd"] > 0 and row["stream"] == 0


def test_max_tokens_cut_reports_length(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=LOCAL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=5,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_streaming_with_include_usage_matches_ledger(client: OpenAI, live_server: LiveServer) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=LOCAL,
        messages=QUESTION,
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == f"chatcmpl-{request_id}" and c.model == LOCAL for c in chunks)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert all(c.usage is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert final.usage.completion_tokens >= len(content_chunks) >= 1
    row = live_server.wait_usage(request_id)
    assert row["completion_tokens"] == final.usage.completion_tokens
    assert row["prompt_tokens"] == final.usage.prompt_tokens
    assert row["status"] == "ok" and row["stream"] == 1 and row["ttft_ms"] is not None


def test_stream_without_include_usage_sends_no_usage_but_ledger_is_exact(
    client: OpenAI, live_server: LiveServer
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=LOCAL, messages=QUESTION, temperature=0, max_tokens=8, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    non_stream = client.chat.completions.create(model=LOCAL, messages=QUESTION, temperature=0, max_tokens=8)
    row = live_server.wait_usage(request_id)
    assert non_stream.usage is not None
    assert row["prompt_tokens"] == non_stream.usage.prompt_tokens
    assert row["completion_tokens"] == non_stream.usage.completion_tokens


def test_content_as_text_parts_and_system_message(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=LOCAL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
        ],
        max_tokens=4,
        temperature=0.7,
        top_p=0.9,
        seed=7,
        stop=["\n\n"],
        presence_penalty=0.1,
        frequency_penalty=0.1,
        user="someone",
    )
    assert completion.choices[0].message.content is not None


def test_upstream_failure_before_first_byte_is_502_with_error_row(live_server: LiveServer, model_key: str) -> None:
    client = OpenAI(base_url=live_server.openai_base, api_key=model_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.with_raw_response.create(model="fake-error", messages=QUESTION, stream=True)
    assert info.value.status_code == 502
    body = info.value.response.json()
    assert body["error"]["code"] == "upstream_error" and body["error"]["type"] == "server_error"
    row = live_server.wait_usage(info.value.response.headers["x-request-id"])
    assert row["status"] == "error" and row["http_status"] == 502


def test_failure_mid_stream_ends_with_error_event(live_server: LiveServer, model_key: str) -> None:
    client = OpenAI(base_url=live_server.openai_base, api_key=model_key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="fake-midstream-error", messages=[{"role": "user", "content": "one two three four"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        with pytest.raises(openai.APIError) as info:
            list(response.parse())
    assert "mid-stream" in info.value.message
    row = live_server.wait_usage(request_id)
    assert row["status"] == "error" and row["completion_tokens"] == 2 and row["prompt_tokens"] == 4


def test_next_turn_reuses_the_prompt_cache_and_bills_cached_tokens_cheaper(
    client: OpenAI, live_server: LiveServer
) -> None:
    system = {"role": "system", "content": "You are a helpful geography tutor. Answer in one short sentence. " * 4}
    turn1 = [system, {"role": "user", "content": "What is the capital of France?"}]
    first = client.chat.completions.create(model=LOCAL, messages=turn1, max_tokens=8, temperature=0)
    answer = first.choices[0].message.content or ""
    turn2 = [*turn1, {"role": "assistant", "content": answer}, {"role": "user", "content": "And of Spain?"}]
    raw = client.chat.completions.with_raw_response.create(model=LOCAL, messages=turn2, max_tokens=8, temperature=0)
    second = raw.parse()
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert cached > 40
    assert cached < second.usage.prompt_tokens
    row = live_server.wait_usage(raw.headers["x-request-id"])
    assert row["cached_tokens"] == cached
    # catalog prices per 1M tokens: input 0.65, cached input 0.30, output 1.30 (picodollars = tokens * price * 1e6)
    expected = (row["prompt_tokens"] - cached) * 650_000 + cached * 300_000 + row["completion_tokens"] * 1_300_000
    assert row["cost_picousd"] == expected


def test_concurrent_chats_on_one_system_prompt_are_billed_for_what_came_from_cache(
    client: OpenAI, live_server: LiveServer
) -> None:
    """After the first request, every turn of four concurrent chats finds the shared system prompt
    cached, says so in its usage, and its usage row bills those tokens at the cached price."""
    system = {"role": "system", "content": "You are the help desk of a city library. Answer briefly. " * 6}
    first = client.chat.completions.create(
        model=LOCAL, messages=[system, {"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
    )
    assert first.usage is not None
    shared = first.usage.prompt_tokens - 8  # all but the "Hi" turn and the assistant header

    def chat(user: int) -> list[tuple[str, int]]:
        messages = [system]
        out = []
        for turn in range(2):
            messages.append({"role": "user", "content": f"Reader {user} asks, question {turn}: can I renew a book?"})
            raw = client.chat.completions.with_raw_response.create(
                model=LOCAL, messages=messages, max_tokens=8, temperature=0
            )
            reply = raw.parse()
            assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
            out.append((raw.headers["x-request-id"], reply.usage.prompt_tokens_details.cached_tokens or 0))
            messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        return out

    with ThreadPoolExecutor(4) as pool:
        turns = [t for chat_turns in pool.map(chat, range(4)) for t in chat_turns]
    assert len(turns) == 8
    for request_id, cached in turns:
        assert cached >= shared
        row = live_server.wait_usage(request_id)
        assert row["status"] == "ok" and row["cached_tokens"] == cached
        expected = (row["prompt_tokens"] - cached) * 650_000 + cached * 300_000 + row["completion_tokens"] * 1_300_000
        assert row["cost_picousd"] == expected
