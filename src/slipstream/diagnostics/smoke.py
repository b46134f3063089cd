"""One real chat completion on the default model, through a real runner process, with tokens/s.

The runner is started exactly as the gateway starts it (``Supervisor.spec_for`` and
``spawn_runner``, on a Unix socket in a private temp dir), so a runner that cannot load or
crashes here would do the same under ``slipstream serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from typing import Any

from slipstream.catalog import ModelEntry
from slipstream.config import EngineSettings
from slipstream.diagnostics.report import Check, Status
from slipstream.errors import SlipstreamError
from slipstream.runners.exit_cause import describe_exit
from slipstream.runners.process import StartedRunner, spawn_runner, stop_process
from slipstream.runners.supervisor import Supervisor
from slipstream.upstream.client import OpenAICompatClient, new_session

MAX_TOKENS = 32
REQUEST_TIMEOUT_S = 60.0
PROMPT = "Count from one to one hundred, one number per line."


@contextlib.contextmanager
def _runner_logs_kept_out() -> Iterator[None]:
    """spawn_runner forwards the runner's log to ``sys.stderr``; in doctor it would land across the
    table, and what matters of it (the last lines) is quoted in the check's detail instead."""
    with contextlib.redirect_stderr(io.TextIOWrapper(io.BytesIO())):
        yield


async def _complete(runner: StartedRunner, model_id: str, max_tokens: int) -> dict[str, Any]:
    session = new_session(unix_socket=runner.socket, read_timeout=REQUEST_TIMEOUT_S)
    try:
        client = OpenAICompatClient(runner.base_url + "/v1", session)
        payload = {
            "model": model_id,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens,
            "ignore_eos": True,  # so exactly max_tokens are generated and tokens/s compares across runs
            "temperature": 0,
        }
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await client.complete(payload)
    finally:
        await session.close()


async def _why_it_failed(runner: StartedRunner, exc: BaseException) -> str:
    """The runner's end if it died (given a moment to be reaped), else the request's error."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            await runner.process.wait()
    code = runner.process.returncode
    if code is None:
        return f"the chat completion failed: {str(exc) or f'no answer within {REQUEST_TIMEOUT_S:.0f}s'}"
    if runner.stderr is not None:
        await runner.stderr.finished(1.0)
    said = " | ".join(runner.stderr.lines()) if runner.stderr is not None else ""
    return f"the runner {describe_exit(code)} while generating{f' ({said})' if said else ''}"


async def smoke_inference(entry: ModelEntry, engine: EngineSettings, max_tokens: int = MAX_TOKENS) -> Check:
    facts: dict[str, Any] = {"model": entry.id, "max_tokens": max_tokens}
    supervisor = Supervisor(engine)
    try:
        with _runner_logs_kept_out():
            try:
                runner = await spawn_runner(supervisor.spec_for(entry), engine.start_timeout_s)
            except (SlipstreamError, OSError) as exc:  # RunnerStartFailed names the cause and the cure
                return Check("inference", Status.fail, str(exc), facts)
            facts["startup_s"] = round(runner.startup_s, 3)
            try:
                started = time.perf_counter()
                body = await _complete(runner, entry.id, max_tokens)
                wall = time.perf_counter() - started
            except (SlipstreamError, TimeoutError) as exc:
                return Check("inference", Status.fail, await _why_it_failed(runner, exc), facts)
            finally:
                await stop_process(runner.process)
    finally:
        await supervisor.aclose()
    return _measured(body, wall, facts)


def _measured(body: dict[str, Any], wall: float, facts: dict[str, Any]) -> Check:
    usage = body.get("usage") or {}
    tokens = int(usage.get("completion_tokens", 0))
    facts.update(
        completion_tokens=tokens,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        wall_s=round(wall, 3),
        tokens_per_s=round(tokens / wall, 1) if wall > 0 else 0.0,
    )
    detail = (
        f"{facts['model']}: {tokens} tokens in {wall:.2f} s = {facts['tokens_per_s']} tokens/s "
        f"(runner ready in {facts['startup_s']:.2f} s)"
    )
    if tokens != facts["max_tokens"]:
        return Check("inference", Status.warn, f"asked for {facts['max_tokens']} tokens, got {detail}", facts)
    return Check("inference", Status.ok, detail, facts)
