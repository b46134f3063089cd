"""The supervisor and local provider with a replaced runner factory (ollama's scheduler habit).

The stand-in "runner" is the real fake OpenAI server process, so everything past the
factory (HTTP, keep-alive timers, eviction, crash detection) runs for real.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from slipstream.catalog import ModelEntry
from slipstream.config import EngineSettings
from slipstream.errors import ModelUnavailable
from slipstream.protocol.chat import parse_chat_request
from slipstream.providers.base import HEARTBEAT, ChatCall
from slipstream.providers.local import LocalProvider
from slipstream.runners.process import RunnerSpec, StartedRunner, stop_process
from slipstream.runners.supervisor import SpawnFn, Supervisor


def entry(tmp_path: Path, model_id: str, keep_alive: float = -1) -> ModelEntry:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    return ModelEntry(id=model_id, provider="local", gguf=str(gguf), keep_alive=keep_alive)


def slow_fake_spawn(delay: float) -> SpawnFn:
    async def spawn(spec: RunnerSpec, timeout_s: float) -> StartedRunner:
        await asyncio.sleep(delay)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "slipstream.testing.fake_upstream", "--port", "0", stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        port = int(line.split()[-1])
        return StartedRunner(proc, port, {"port": port}, delay)

    return spawn


async def test_cold_start_streams_heartbeats_then_tokens(tmp_path: Path) -> None:
    supervisor = Supervisor(EngineSettings(), spawn=slow_fake_spawn(2.3))
    e = entry(tmp_path, "m")
    provider = LocalProvider(e, supervisor)
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    call = ChatCall("rid", e, request, request.model_dump(exclude_none=True))
    try:
        events = [event async for event in provider.stream(call)]
        assert events[:2] == [HEARTBEAT, HEARTBEAT]
        chunks = [ev for ev in events if ev is not HEARTBEAT]
        assert isinstance(chunks[-1], dict) and chunks[-1]["usage"]["completion_tokens"] == 7
        assert supervisor.cold_starts == 1
    finally:
        await supervisor.aclose()


async def test_keep_alive_zero_unloads_after_the_request(tmp_path: Path) -> None:
    supervisor = Supervisor(EngineSettings(), spawn=slow_fake_spawn(0))
    e = entry(tmp_path, "m", keep_alive=0)
    try:
        runner = await supervisor.acquire(e)
        assert supervisor.loaded() == ["m"]
        supervisor.release(runner)
        await asyncio.wait_for(runner.started.process.wait(), 10)
        assert supervisor.loaded() == []
    finally:
        await supervisor.aclose()


async def test_eviction_is_lru_among_idle_and_busy_runners_are_never_evicted(tmp_path: Path) -> None:
    supervisor = Supervisor(EngineSettings(max_loaded_models=2), spawn=slow_fake_spawn(0))
    a, b, c = (entry(tmp_path, name) for name in "abc")
    try:
        ra = await supervisor.acquire(a)
        rb = await supervisor.acquire(b)
        supervisor.release(rb)
        supervisor.release(ra)  # a is now the most recently used
        await supervisor.acquire(c)
        assert sorted(supervisor.loaded()) == ["a", "c"]
        busy = await supervisor.acquire(a)
        with pytest.raises(ModelUnavailable) as info:
            await supervisor.acquire(b)
        assert info.value.code == "server_overloaded" and info.value.retry_after
        supervisor.release(busy)
    finally:
        await supervisor.aclose()


async def test_a_dead_runner_is_replaced_on_the_next_acquire(tmp_path: Path) -> None:
    supervisor = Supervisor(EngineSettings(), spawn=slow_fake_spawn(0))
    e = entry(tmp_path, "m")
    try:
        first = await supervisor.acquire(e)
        supervisor.release(first)
        first.started.process.kill()
        await first.started.process.wait()
        await asyncio.sleep(0.05)
        second = await supervisor.acquire(e)
        assert second.pid != first.pid and second.alive
        supervisor.release(second)
    finally:
        await supervisor.aclose()
        await stop_process(first.started.process)
