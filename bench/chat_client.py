"""The chat-traffic scenario's prompts and its client for one conversation turn.

Prompts are generated here from a seed: deterministic pseudo-random English-like text built from a
small word list written for this benchmark. A system prompt is one application's; questions are
short and differ per round, user and turn, so that only the system prompt (and a user's own earlier
turns) can be served from a server's cache.

Each turn is a streaming chat completion with ``temperature: 0``, a fixed ``seed``, no
``ignore_eos`` (unless the caller passes the target's ``extra_body``, as long_prompt.py does for its
decoding streams) and ``stream_options.include_usage``. Cached prompt tokens come from
``usage.prompt_tokens_details.cached_tokens`` when the server sends it, else from llama-server's
``timings.cache_n``; with neither (llama-cpp-python's server) they are unknown, not 0. Output tokens
come from the usage when sent, else are counted as content chunks. Every content chunk's arrival
time is kept (``Turn.stamps``) for inter-token latencies.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from engine_client import Target

_WORD_TEXT = (
    "the a an of to in for on with by from about into over after before under between during "
    "customer order account invoice payment delivery product service support ticket request refund "
    "policy team manager report schedule meeting project budget contract supplier warehouse stock "
    "price discount member subscription plan upgrade message email phone address region office "
    "always never usually politely clearly briefly carefully quickly kindly exactly only also "
    "answer explain check confirm describe list suggest remind ask help keep avoid offer send "
    "open close change cancel update review approve share follow write read find "
    "new old small large simple short long friendly formal local main next last first other "
    "and or but so because if when while unless although then"
)
WORDS = _WORD_TEXT.split()
QUESTION_OPENERS = ("How do I", "Can you explain how to", "What happens if I", "Why does my", "When should I")
TOKENS_PER_WORD = 1.2  # rough, for the small models this benchmark runs; the real count is reported


def prose(rng: random.Random, first: str, tokens: int) -> str:
    """``first`` and then generated sentences, about ``tokens`` tokens in all."""
    words = max(8, round(tokens / TOKENS_PER_WORD))
    sentences = [first]
    count = len(first.split())
    while count < words:
        n = rng.randint(8, 16)
        sentence = " ".join(rng.choice(WORDS) for _ in range(n))
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        count += n
    return " ".join(sentences)


def system_prompt(seed: int, app: int, tokens: int) -> str:
    """Application ``app``'s system prompt, of about ``tokens`` tokens."""
    rng = random.Random(f"system:{seed}:{app}")
    return prose(rng, f"You are the assistant of application {app}, a service desk.", tokens)


def question(seed: int, round_index: int, user: int, turn: int) -> str:
    rng = random.Random(f"question:{seed}:{round_index}:{user}:{turn}")
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 9)))
    return f"{rng.choice(QUESTION_OPENERS)} {body}?"


@dataclass
class Turn:
    """One request of a conversation, as measured."""

    user: int
    app: int
    turn: int  # 1-based
    ok: bool
    error: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    cached_source: str = "none"
    output_source: str = "none"  # "usage", or "chunks" when the server sent no usage
    reply: str = ""
    retries: int = 0
    started: float = 0.0  # time.perf_counter() when the request was first sent
    stamps: list[float] = field(default_factory=list)  # perf_counter() at each content chunk's arrival


def body(
    target: Target, messages: list[dict[str, str]], max_tokens: int, seed: int, extra: dict[str, Any] | None = None
) -> bytes:
    """No extra_body by default: the decode scenario's ``ignore_eos`` (or logit_bias) is not wanted in chats."""
    return orjson.dumps({
        "model": target.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "seed": seed,
        "stream": True, "stream_options": {"include_usage": True}, **(extra or {}),
    })  # fmt: skip


_STALE_CONNECTION = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
MAX_STALE_RETRIES = 10  # as engine_client: a pooled connection the server had closed; the clock runs on


async def chat_turn(
    session: aiohttp.ClientSession, target: Target, messages: list[dict[str, str]], max_tokens: int, seed: int,
    who: tuple[int, int, int], extra: dict[str, Any] | None = None, first_token: asyncio.Event | None = None,
) -> Turn:  # fmt: skip
    """Stream one reply; ``who`` is (user, app, turn). Failures are returned, never raised.

    ``extra`` is merged into the request body (e.g. ``target.extra_body``); ``first_token``, if given, is
    set when the first content arrives.
    """
    t0 = time.perf_counter()
    user, app, turn = who
    data = body(target, messages, max_tokens, seed, extra)
    headers = {"Content-Type": "application/json", **target.headers}
    for retries in range(MAX_STALE_RETRIES + 1):
        got_status = False
        try:
            async with session.post(target.url, data=data, headers=headers) as resp:
                got_status = True
                if resp.status != 200:
                    text = (await resp.read())[:200].decode(errors="replace")
                    return Turn(user, app, turn, False, f"HTTP {resp.status}: {text}", time.perf_counter() - t0)
                result = await _read_stream(resp, t0, Turn(user, app, turn, False, started=t0), first_token)
                result.retries = retries
                return result
        except _STALE_CONNECTION as exc:
            if got_status or retries >= MAX_STALE_RETRIES:
                return Turn(user, app, turn, False, f"{type(exc).__name__}: {exc}"[:200], time.perf_counter() - t0)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Turn(user, app, turn, False, f"{type(exc).__name__}: {exc}"[:200], time.perf_counter() - t0)
    raise AssertionError("unreachable")


async def _read_stream(
    resp: aiohttp.ClientResponse, t0: float, out: Turn, first_token: asyncio.Event | None = None
) -> Turn:
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    finish = None
    done = False
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        obj = orjson.loads(payload)
        if obj.get("error"):
            out.error = f"error event: {str(obj['error'])[:200]}"
            out.latency_s = time.perf_counter() - t0
            return out
        for choice in obj.get("choices") or []:
            if content := (choice.get("delta") or {}).get("content"):
                now = time.perf_counter()
                if out.ttft_s is None:
                    out.ttft_s = now - t0
                    if first_token is not None:
                        first_token.set()
                out.stamps.append(now)
                parts.append(content)
            finish = choice.get("finish_reason") or finish
        usage = obj.get("usage") or usage
        timings = obj.get("timings") or timings
    out.latency_s = time.perf_counter() - t0
    out.reply = "".join(parts)
    if usage:
        out.output_tokens, out.output_source = int(usage.get("completion_tokens") or 0), "usage"
        out.prompt_tokens = usage.get("prompt_tokens")
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is not None:
            out.cached_tokens, out.cached_source = int(cached), "usage.prompt_tokens_details"
    else:
        out.output_tokens, out.output_source = len(parts), "chunks"
    if out.cached_tokens is None and timings and timings.get("cache_n") is not None:
        out.cached_tokens, out.cached_source = int(timings["cache_n"]), "timings.cache_n"
    out.ok = done and finish is not None and bool(parts)
    if not out.ok:
        missing = [("no [DONE]", not done), ("no finish_reason", finish is None), ("no content", not parts)]
        out.error = "incomplete stream: " + ", ".join(what for what, yes in missing if yes)
    return out
