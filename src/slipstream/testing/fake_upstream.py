"""A fast fake OpenAI-compatible server on loopback: a real HTTP peer for tests and benchmarks.

The requested model name selects the behaviour: ``error-500``, ``error-429``, ``slow``,
``error-401`` (refuses the gateway's key, in words that name an internal host, like a real
provider's), ``echo-params`` (answers with the sorted names of the parameters it received),
``usage-cached-over-prompt`` (reports more cached than prompt tokens), ``usage-malformed``
(reports a prompt count that is not a number), or anything else for a fixed, instant answer.
Run it with ``python -m slipstream.testing.fake_upstream``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any

import orjson
from aiohttp import web

from slipstream.protocol.usage import usage

WORDS = ["The", " capital", " of", " France", " is", " Paris", "."]
PROMPT_TOKENS = 13


REFUSAL_401 = "Incorrect API key provided: sk-op****1234 (gateway internal-gw.corp.example:9443)"


def _completion(model: str, text: str = "".join(WORDS)) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(model, len(WORDS)),
    }


def _usage(model: str, completion: int) -> dict[str, Any]:
    """What an upstream reports; two models report what no honest upstream would."""
    if model == "usage-cached-over-prompt":
        return usage(PROMPT_TOKENS, completion, cached=PROMPT_TOKENS * 3)
    if model == "usage-malformed":
        return {**usage(PROMPT_TOKENS, completion), "prompt_tokens": "lots"}
    return usage(PROMPT_TOKENS, completion)


def _chunk(model: str, delta: dict[str, Any], finish: str | None, usage: Any = None) -> bytes:
    choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": choices, "usage": usage}  # fmt: skip
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _error(status: int, message: str, type_: str, code: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    headers = {"Retry-After": "3"} if status == 429 else {}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    model = str(body.get("model", "fake"))
    if model == "error-500":
        return _error(500, "the fake upstream broke", "server_error", "internal_error")
    if model == "error-429":
        return _error(429, "slow down", "rate_limit_error", "rate_limit_exceeded")
    if model == "error-401":
        return _error(401, REFUSAL_401, "invalid_request_error", "invalid_api_key")
    if model == "echo-params" and not body.get("stream"):
        return web.Response(
            body=orjson.dumps(_completion(model, " ".join(sorted(body)))), content_type="application/json"
        )
    delay = 0.02 if model == "slow" else 0.0
    if not body.get("stream"):
        if delay:
            await asyncio.sleep(delay * len(WORDS))
        return web.Response(body=orjson.dumps(_completion(model)), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    await resp.write(_chunk(model, {"role": "assistant", "content": ""}, None))
    for i, word in enumerate(WORDS):
        if delay:
            await asyncio.sleep(delay)
        await resp.write(_chunk(model, {"content": word}, None, _usage(model, i + 1)))
    await resp.write(_chunk(model, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [], "usage": _usage(model, len(WORDS))}  # fmt: skip
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def list_models(request: web.Request) -> web.Response:
    data = {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}]}
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    return app


async def _serve(host: str, port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock).start()
    print(f"FAKE_UPSTREAM_READY {sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    uvloop.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
