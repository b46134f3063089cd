"""The runner end to end: a real subprocess on the built-in SmolLM2 GGUF, driven by the OpenAI SDK."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from slipstream.catalog import builtin_gguf_path
from tests.engine.conftest import Runner, start_runner

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def post(url: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def status(runner: Runner) -> dict[str, Any]:
    return get_json(runner.base + "/status")  # type: ignore[no-any-return]


_COUNT_TOKENS = """
import sys
from llama_cpp import Llama
vocab = Llama(sys.argv[1], vocab_only=True, verbose=False)
print(len(vocab.tokenize(sys.argv[2].encode(), add_bos=False, special=True)))
"""


def reference_prompt_tokens(user: str) -> int:
    """Token count of SmolLM2's ChatML prompt, by llama-cpp-python's own high-level tokenizer.

    In a subprocess: llama.cpp never loads into the pytest process, so a broken engine build
    fails this test instead of killing the run."""
    text = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    argv = [sys.executable, "-c", _COUNT_TOKENS, str(builtin_gguf_path()), text]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout.strip())


def test_health_models_status(runner: Runner) -> None:
    assert get_json(runner.base + "/health") == {"status": "ok"}
    models = get_json(runner.base + "/v1/models")
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["smollm2"]
    st = status(runner)
    assert st["model"] == "smollm2" and st["n_ctx"] == 2048 and st["parallel"] == 4
    assert st["pid"] == runner.proc.pid == runner.ready["pid"]
    assert st["rss_bytes"] > 50_000_000 and st["loaded_at"] <= st["last_active_at"] + 1e-6
    for key in ("active", "queued", "slots_in_use", "tokens_generated"):
        assert isinstance(st[key], int)


def test_non_streaming_usage_matches_tokenizer(client: OpenAI) -> None:
    r = client.chat.completions.create(model="anything", messages=QUESTION, max_tokens=12, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "anything"
    assert r.system_fingerprint is None
    (c,) = r.choices
    assert c.index == 0 and c.message.role == "assistant" and c.message.content
    assert r.usage is not None
    assert r.usage.prompt_tokens == reference_prompt_tokens(QUESTION[0]["content"])
    if c.finish_reason == "length":
        assert r.usage.completion_tokens == 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_continuous_usage(client: OpenAI) -> None:
    plain = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=16, temperature=0)
    stream = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(ch.usage is not None for ch in chunks), "continuous usage: every chunk carries usage"
    counts = [ch.usage.completion_tokens for ch in chunks if ch.usage]
    assert counts == sorted(counts) and counts[0] == 0
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert plain.usage is not None
    assert final.usage.prompt_tokens == plain.usage.prompt_tokens
    assert final.usage.completion_tokens == plain.usage.completion_tokens == counts[-1]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]


def test_streaming_without_usage_options(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=QUESTION, max_tokens=4, stream=True))
    assert all(ch.usage is None for ch in chunks) and all(ch.choices for ch in chunks)


def test_concurrent_streams_all_complete(runner: Runner) -> None:
    seen: list[int] = []

    async def one(aclient: AsyncOpenAI, i: int) -> tuple[str, int]:
        stream = await aclient.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"Count from {i} to 100."}], max_tokens=48,
            temperature=0, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        text, used = "", 0
        async for ch in stream:
            if ch.choices:
                text += ch.choices[0].delta.content or ""
            elif ch.usage:
                used = ch.usage.completion_tokens
        return text, used

    async def watch(done: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not done.is_set():
                async with http.get(runner.base + "/status") as resp:
                    seen.append((await resp.json())["slots_in_use"])
                await asyncio.sleep(0.02)

    async def main() -> list[tuple[str, int]]:
        async with AsyncOpenAI(base_url=runner.base + "/v1", api_key="x", max_retries=0) as aclient:
            done = asyncio.Event()
            watcher = asyncio.create_task(watch(done))
            try:
                results = await asyncio.gather(*(one(aclient, i) for i in range(4)))
            except BaseException:  # the streams' error is the one to report; leave no task unretrieved
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                raise
            done.set()
            await watcher
            return results

    results = asyncio.run(main())
    assert [used for _, used in results] == [48] * 4
    assert all(text for text, _ in results)
    assert max(seen) >= 2, f"streams were never decoded together: {seen}"
    assert status(runner)["slots_in_use"] == 0


def test_disconnect_frees_slot(runner: Runner) -> None:
    before = status(runner)["tokens_generated"]
    body = {"model": "m", "messages": QUESTION, "max_tokens": 1500, "ignore_eos": True, "stream": True}
    conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    n = 0
    while n < 6:
        n += resp.readline().startswith(b"data: ")
    assert status(runner)["active"] == 1
    conn.close()
    deadline = time.monotonic() + 2.0
    while status(runner)["active"] and time.monotonic() < deadline:
        time.sleep(0.02)
    st = status(runner)
    assert st["active"] == 0 and st["slots_in_use"] == 0
    assert before + 5 <= st["tokens_generated"] < before + 1500


def test_prompt_cache_second_turn(client: OpenAI) -> None:
    turn1 = [{"role": "user", "content": "Name three colours of the rainbow, briefly."}]
    first = client.chat.completions.create(model="m", messages=turn1, max_tokens=20, temperature=0)  # type: ignore[arg-type]
    assert first.usage is not None
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And two more?"},
    ]
    second = client.chat.completions.create(model="m", messages=turn2, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and first.usage.prompt_tokens <= cached < second.usage.prompt_tokens


def test_a_shared_system_prompt_is_reused_without_evicting_other_conversations(client: OpenAI) -> None:
    """A reuses B's system-prompt KV (copied into another slot); B's own cache survives, exactly."""
    system = {"role": "system", "content": "You are a terse assistant for a garden centre. " * 6}

    def ask(question: str) -> Any:
        msgs = [system, {"role": "user", "content": question}]
        return client.chat.completions.create(model="m", messages=msgs, max_tokens=16, temperature=0)  # type: ignore[arg-type]

    def cached(r: Any) -> int:
        return int(r.usage.prompt_tokens_details.cached_tokens)

    b_ref = ask("How deep should tulip bulbs be planted?")
    assert cached(b_ref) < 10, "this system prompt is new to the runner"
    a = ask("Which roses flower twice a year?")
    assert 60 <= cached(a) < a.usage.prompt_tokens - 8, "A should reuse the system prompt, not B's question"
    b = ask("How deep should tulip bulbs be planted?")
    assert cached(b) == b.usage.prompt_tokens - 1, "B's cache must have survived A"
    assert b.choices[0].message.content == b_ref.choices[0].message.content, "reused KV must equal computed KV"
    a_again = ask("Which roses flower twice a year?")
    assert cached(a_again) == a.usage.prompt_tokens - 1


def test_more_chats_than_slots_on_one_system_prompt_all_finish_from_the_cache(runner: Runner) -> None:
    """Six multi-turn chats on four slots: every turn ends whole, every turn after the first finds
    the shared system prompt cached (and says so), and no request waits far beyond its turn."""
    system = {"role": "system", "content": "You answer questions about a bicycle repair shop, briefly. " * 8}
    users, turns, max_tokens = 6, 3, 12
    before = status(runner)["first_token_wait_steps"]["count"]

    async def chat(aclient: AsyncOpenAI, user: int) -> list[Any]:
        messages: list[Any] = [system]
        replies = []
        for t in range(turns):
            question = f"Customer {user} asks question {t}: is my {user + t} gear ok?"
            messages.append({"role": "user", "content": question})
            r = await aclient.chat.completions.create(
                model="m", messages=messages, max_tokens=max_tokens, temperature=0
            )
            replies.append(r)
            messages.append({"role": "assistant", "content": r.choices[0].message.content})
        return replies

    async def main() -> tuple[Any, list[list[Any]]]:
        async with AsyncOpenAI(base_url=runner.base + "/v1", api_key="x", max_retries=0, timeout=120) as aclient:
            first = await aclient.chat.completions.create(
                model="m", messages=[system, {"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
            )
            return first, await asyncio.gather(*(chat(aclient, u) for u in range(users)))

    first, chats = asyncio.run(main())
    # everything up to the end of the system turn is shared: the first prompt minus its "Hi" turn
    shared = first.usage.prompt_tokens - 8
    for replies in chats:
        assert len(replies) == turns
        for r in replies:
            assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= max_tokens
            assert shared <= r.usage.prompt_tokens_details.cached_tokens < r.usage.prompt_tokens
    waits = status(runner)["first_token_wait_steps"]
    assert waits["count"] - before == 1 + users * turns
    # FIFO on 4 slots: a request waits for at most one other request per slot to end (prefill in
    # 64-token chunks, then max_tokens), then for its own prefill
    longest = max(r.usage.prompt_tokens for replies in chats for r in replies)
    holding = -(-longest // 64) + max_tokens
    assert waits["max"] <= 2 * holding + 2, waits


def test_a_chat_pushed_out_of_every_slot_comes_back_from_host_memory(runner: Runner) -> None:
    """Five chats through four slots: the first one's history returns from the host cache, and the
    restored KV answers exactly as KV computed from scratch does (a runner without a host cache)."""
    client = runner.client()

    def chat(i: int) -> list[Any]:
        return [{"role": "system", "content": f"You are assistant number {i} of a ferry company. " * 4},
                {"role": "user", "content": f"When does ferry {i} leave on Sundays?"}]  # fmt: skip

    first = client.chat.completions.create(model="m", messages=chat(0), max_tokens=12, temperature=0)  # type: ignore[arg-type]
    for i in range(1, 5):
        client.chat.completions.create(model="m", messages=chat(i), max_tokens=4, temperature=0)  # type: ignore[arg-type]
    before = status(runner)["host_cache"]
    turn2 = [*chat(0), {"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": "And on Mondays?"}]  # fmt: skip
    again = client.chat.completions.create(model="m", messages=turn2, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    assert again.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    after = status(runner)["host_cache"]
    assert after["restored"] == before["restored"] + 1 and after["entries"] >= 1
    with start_runner("--parallel", "2", "--n-ctx", "2048", "--host-cache-mib", "0") as fresh:
        assert status(fresh)["host_cache"] is None
        computed = fresh.client().chat.completions.create(model="m", messages=turn2, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert again.choices[0].message.content == computed.choices[0].message.content


def test_seed_determinism(client: OpenAI) -> None:
    def run(seed: int) -> str:
        r = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=24,
            temperature=1.0, seed=seed,
        )  # fmt: skip
        return r.choices[0].message.content or ""

    a, b, c = run(1234), run(1234), run(99)
    assert a == b
    assert a != c


def test_every_sampling_knob_is_honoured(client: OpenAI) -> None:
    banned = 28  # a token id the biased request can never produce
    r = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=12, temperature=0.7, top_p=0.9, seed=3,
        frequency_penalty=0.5, presence_penalty=0.3, logit_bias={str(banned): -100}, logprobs=True,
        extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1, "ignore_eos": True},
    )  # fmt: skip
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 12
    forced = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=3, temperature=0, logit_bias={str(banned): 100}
    )
    piece = bytes(
        client.chat.completions.create(
            model="m", messages=QUESTION, max_tokens=1, temperature=0, logit_bias={str(banned): 100}, logprobs=True
        )
        .choices[0]
        .logprobs.content[0]
        .bytes  # type: ignore[union-attr, index]
    ).decode()
    assert forced.choices[0].message.content == piece * 3


def test_stop_strings_never_leak(client: OpenAI) -> None:
    base = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=24, temperature=0)
    full = base.choices[0].message.content or ""
    assert len(full) > 12
    stop = full[4:10]  # six characters from the middle of an early token run
    cut = full[: full.index(stop)]
    r = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=24, temperature=0, stop=[stop])
    assert r.choices[0].message.content == cut and r.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=24, temperature=0, stop=stop, stream=True
    )
    chunks = [ch.choices[0] for ch in stream if ch.choices]
    text = "".join(ch.delta.content or "" for ch in chunks)
    assert text == cut and stop not in text
    assert chunks[-1].finish_reason == "stop"


def test_n_choices(client: OpenAI) -> None:
    one = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=10, temperature=0)
    r = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=10, temperature=1.0, n=3, seed=7, extra_body={"ignore_eos": True}
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" and c.message.content for c in r.choices)
    assert r.usage is not None and one.usage is not None
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.completion_tokens == 30
    assert len({c.message.content for c in r.choices}) > 1


def test_n_greedy_choices_share_the_prompt_kv(client: OpenAI) -> None:
    """Choices 1.. start from a KV copy of choice 0's prefill; greedy decoding must not notice."""
    msgs = [{"role": "user", "content": "List three fruits."}]
    one = client.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    two = client.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0, n=2)  # type: ignore[arg-type]
    assert [c.message.content for c in two.choices] == [one.choices[0].message.content] * 2


def test_logprobs_shape(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None and len(lp.content) == 6
    for item in lp.content:
        assert item.logprob <= 0 and isinstance(item.bytes, list)
        assert len(item.top_logprobs) == 3
        tops = [t.logprob for t in item.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert item.top_logprobs[0].token == item.token  # greedy picks the most likely token
        assert abs(item.top_logprobs[0].logprob - item.logprob) < 1e-6
    assert "".join(i.token for i in lp.content) == r.choices[0].message.content
    stream = client.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2, stream=True,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    streamed = [
        t for ch in stream if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content or []
    ]
    assert [t.token for t in streamed] == [i.token for i in lp.content]


def test_json_schema_output_always_valid(runner: Runner) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "likes_cats": {"type": "boolean"},
        },
        "required": ["name", "age", "likes_cats"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}

    async def main() -> list[Any]:
        aclient = AsyncOpenAI(base_url=runner.base + "/v1", api_key="x", max_retries=0)
        return await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": "Describe a person as JSON."}],
                    max_tokens=60,
                    temperature=1.0,
                    seed=seed,
                    response_format=fmt,  # type: ignore[arg-type]
                )
                for seed in range(20)
            )
        )

    for r in asyncio.run(main()):
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_tool_choice_required(client: OpenAI) -> None:
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(
        model="m",
        messages=msgs,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type, list-item]
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.content is None
    (call,) = c.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    stream = client.chat.completions.create(
        model="m", messages=msgs, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=40, temperature=0,  # type: ignore[arg-type, list-item]
        stream=True,
    )  # fmt: skip
    deltas = [ch.choices[0] for ch in stream if ch.choices]
    calls = [tc for d in deltas for tc in (d.delta.tool_calls or [])]
    assert calls[0].id == calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
    args = "".join((tc.function.arguments or "") for tc in calls if tc.function)
    assert len(calls) > 2, "arguments arrive in pieces"
    assert args == call.function.arguments
    assert deltas[-1].finish_reason == "tool_calls"


def test_named_tool_and_auto_with_tool_history(client: OpenAI) -> None:
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    msgs: list[Any] = [{"role": "user", "content": "What's the weather in Oslo?"}]
    named = client.chat.completions.create(
        model="m", messages=msgs, tools=[other, WEATHER_TOOL], max_tokens=40, temperature=0,  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    (call,) = named.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    history = [
        *msgs,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Rain, 7 C"},
    ]
    stream = client.chat.completions.create(
        model="m",
        messages=history,
        tools=[other, WEATHER_TOOL],
        max_tokens=24,
        temperature=0,
        stream=True,  # type: ignore[list-item]
    )
    chunks = [ch.choices[0] for ch in stream if ch.choices]
    reason = chunks[-1].finish_reason
    calls = [tc for ch in chunks for tc in ch.delta.tool_calls or []]
    text = "".join(ch.delta.content or "" for ch in chunks)
    assert reason in ("stop", "length", "tool_calls")
    if reason == "tool_calls":
        assert calls and calls[0].function and calls[0].function.name in ("get_weather", "get_time")
    else:
        assert text and not calls and "<tool_call>" not in text


def test_context_length_exceeded(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * 2100}])
    assert exc.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", messages=QUESTION, max_tokens=2040)
    assert exc.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"temperature": 3}, "temperature", "invalid_value"),
        ({"top_p": "high"}, "top_p", "invalid_type"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"n": 0}, "n", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"top_logprobs": 3}, "top_logprobs", "invalid_value"),
        ({"logit_bias": {"abc": 1}}, "logit_bias", "invalid_value"),
        ({"frobnicate": True}, "frobnicate", "unsupported_parameter"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content[0].type", "unsupported_parameter"),
        ({"tool_choice": "required"}, "tool_choice", "invalid_value"),
        ({"response_format": {"type": "xml"}}, "response_format", "invalid_value"),
    ],
)  # fmt: skip
def test_bad_params_are_400_naming_the_param(runner: Runner, body: dict[str, Any], param: str, code: str) -> None:
    payload = {"model": "m", "messages": QUESTION, **body}
    code_, _, data = post(runner.base + "/v1/chat/completions", json.dumps(payload).encode())
    assert code_ == 400
    err = data["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["code"] == code
    assert err["message"]


def test_bad_json_is_400(runner: Runner) -> None:
    code, _, data = post(runner.base + "/v1/chat/completions", b"{not json")
    assert code == 400 and data["error"]["type"] == "invalid_request_error"


def test_queue_full_is_429() -> None:
    body = {"model": "m", "messages": QUESTION, "max_tokens": 400, "ignore_eos": True}
    with start_runner("--parallel", "1", "--queue-size", "1", "--n-ctx", "1024") as r:

        async def main() -> tuple[int, str, Any, dict[str, Any]]:
            url = r.base + "/v1/chat/completions"
            async with aiohttp.ClientSession() as http:

                async def call() -> int:
                    async with http.post(url, json=body) as resp:
                        await resp.read()
                        return resp.status

                first, second = asyncio.create_task(call()), asyncio.create_task(call())
                for _ in range(300):
                    async with http.get(r.base + "/status") as resp:
                        st = await resp.json()
                    if st["active"] == 1 and st["queued"] == 1:
                        break
                    await asyncio.sleep(0.01)
                async with http.post(url, json=body) as resp:
                    third = resp.status, resp.headers.get("Retry-After", ""), await resp.json()
                first.cancel()
                second.cancel()
                await asyncio.gather(first, second, return_exceptions=True)
                return (*third, st)

        code, retry_after, data, st = asyncio.run(main())
        assert st["active"] == 1 and st["queued"] == 1
        assert code == 429 and retry_after == "1"
        assert data["error"]["type"] == "rate_limit_error" and data["error"]["code"] == "rate_limit_exceeded"
        r.proc.send_signal(signal.SIGTERM)
        assert r.proc.wait(10) == 0, "SIGTERM is a clean exit"


def test_unloadable_model_exits_non_zero(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf")
    cmd = [sys.executable, "-m", "slipstream.engine.runner", "--model", str(bogus), "--model-id", "x"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    assert "cannot load model" in done.stderr and str(bogus) in done.stderr


def test_unknown_model_detail_is_404(runner: Runner) -> None:
    assert get_json(runner.base + "/v1/models/smollm2")["id"] == "smollm2"
    with pytest.raises(urllib.error.HTTPError) as exc:
        get_json(runner.base + "/v1/models/gpt-9")
    assert exc.value.code == 404 and json.loads(exc.value.read())["error"]["code"] == "model_not_found"


def test_the_runner_maps_one_copy_of_each_llama_cpp_library(runner: Runner) -> None:
    """The threadpool must come from the ggml that computes, not a second copy beside it."""
    maps = Path(f"/proc/{runner.proc.pid}/maps").read_text().splitlines()
    libs = sorted({line.split()[-1] for line in maps if "/libggml" in line or "/libllama" in line})
    stems = [Path(lib).name.split(".so")[0] for lib in libs]
    assert len(stems) == len(set(stems)), libs
    assert {"libllama", "libggml-base", "libggml-cpu"} <= set(stems)
