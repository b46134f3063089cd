"""SIGTERM, as systemd, Docker and Kubernetes send it, drains the gateway like SIGINT does.

Mid-load, the gateway stops accepting, lets in-flight requests finish (or cancels them after the
grace period), writes every usage row and the keys' ``last_used_at``, stops its runners, removes
their socket directory and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp
import orjson
import psutil
import pytest

from tests.support.server import LiveServer, run_server

LOCAL = "llama3.3-70b-instruct"
SLOW = "slow-upstream"
CLIENTS = 8
TERM_AFTER_S = 1.0


def write_config(path: Path, upstream_port: int) -> Path:
    path.write_text(
        "include_builtin_models: false\n"
        "engine: {threads: 2}\n"
        "models:\n"
        f"  - {{id: {LOCAL}, provider: local, gguf: 'builtin:smollm2-135m-instruct', context_length: 1024,"
        " parallel: 2, keep_alive: -1}\n"
        f"  - {{id: {SLOW}, provider: openai_compatible, base_url: 'http://127.0.0.1:{upstream_port}/v1',"
        " upstream_model: slow}\n"
    )
    return path


class Seen:
    def __init__(self) -> None:
        self.whole: set[str] = set()  # request ids of responses received whole
        self.started: set[str] = set()  # request ids of streams whose first event arrived


async def call(
    session: aiohttp.ClientSession,
    server: LiveServer,
    key: str,
    model: str,
    stream: bool,
    seen: Seen,
    local_tokens: int = 400,
) -> None:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Count to fifty."}]}
    body |= {"max_tokens": local_tokens, "ignore_eos": True} if model == LOCAL else {"max_tokens": 8}
    body |= {"stream": True} if stream else {}
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(f"{server.base_url}/v1/chat/completions", json=body, headers=headers) as resp:
        if resp.status != 200:
            await resp.read()
            raise aiohttp.ClientError(f"status {resp.status}")  # refused while shutting down: stop this client
        if not stream:
            seen.whole.add(orjson.loads(await resp.read())["id"].removeprefix("chatcmpl-"))
            return
        request_id, tail = None, b""
        async for line in resp.content:
            if line.startswith(b"data: {") and request_id is None:
                request_id = orjson.loads(line[6:])["id"].removeprefix("chatcmpl-")
                seen.started.add(request_id)
            tail = line if line.strip() else tail
        if request_id and tail.strip() == b"data: [DONE]":
            seen.whole.add(request_id)


def runner_of(server: LiveServer) -> tuple[psutil.Process, Path]:
    for child in psutil.Process(server.process.pid).children(recursive=True):
        argv = child.cmdline()
        if "slipstream.engine.runner" in argv:
            return child, Path(argv[argv.index("--socket") + 1]).parent
    raise AssertionError("no runner process")


@pytest.mark.timeout(240)
async def test_sigterm_mid_load_drains_and_records_every_row(upstream_port: int, tmp_path: Path) -> None:
    config = write_config(tmp_path / "slipstream.yaml", upstream_port)
    seen = Seen()
    with run_server(tmp_path / "data", config) as server:
        key = server.create_key("drain")[1]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await call(session, server, key, LOCAL, True, seen, local_tokens=8)  # cold start: a runner to stop later
            runner, socket_dir = runner_of(server)
            assert socket_dir.is_dir()

            async def client(index: int) -> None:
                model = LOCAL if index == 0 else SLOW
                for _ in range(1000):  # bounded; ends at the first refusal or closed connection
                    try:
                        await call(session, server, key, model, index % 2 == 0, seen)
                    except (TimeoutError, aiohttp.ClientError):
                        return

            async def terminate() -> None:
                await asyncio.sleep(TERM_AFTER_S)
                server.process.send_signal(signal.SIGTERM)

            await asyncio.wait_for(asyncio.gather(terminate(), *(client(i) for i in range(CLIENTS))), 90)
        code = await asyncio.to_thread(server.process.wait, 30)
        output = "".join(server.output)
        assert code == 0, output

    con = sqlite3.connect(server.db_path)
    try:
        rows = dict(con.execute("SELECT request_id, status FROM usage").fetchall())
        last_used = con.execute("SELECT last_used_at FROM api_keys WHERE name = 'drain'").fetchone()[0]
    finally:
        con.close()
    assert seen.whole and seen.whole <= rows.keys(), "a response received whole has no usage row"
    assert all(rows[rid] == "ok" for rid in seen.whole)
    assert seen.started <= rows.keys(), "a stream that started has no usage row"
    assert last_used is not None
    assert not psutil.pid_exists(runner.pid) or runner.status() == psutil.STATUS_ZOMBIE
    assert not socket_dir.exists()
