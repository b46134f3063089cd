"""The ledger is billing-grade: a response a client received whole always has its usage row.

A gateway in front of a fast fake upstream takes 16 clients' traffic and is killed with SIGKILL
mid-load, then restarted on the same database, five times; afterwards every response a client
received whole (a JSON body, or a stream up to ``[DONE]``) has exactly one row. With the
database stopped, new requests get 503 with Retry-After, no 200 goes unbilled, and serving
resumes by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from tests.support.postgres import fresh_database_url, start_cluster
from tests.support.server import LiveServer, run_server

POSTGRES_ENV = "SLIPSTREAM_TEST_POSTGRES_URL"
MODEL = "crash-upstream"
CLIENTS = 16
ROUNDS = 5
KILL_AFTER_S = 1.5
ROUND_LIMIT_S = 30.0  # a round's clients stop by themselves long before this


def write_config(path: Path, upstream_port: int, database_url: str | None, **ledger: object) -> Path:
    lines = [
        f"database_url: {database_url}" if database_url else "",
        "ledger: " + orjson.dumps(ledger).decode() if ledger else "",
        "models:",
        f"  - {{id: {MODEL}, provider: openai_compatible, base_url: 'http://127.0.0.1:{upstream_port}/v1',"
        " upstream_model: fast, prices: {input: '1', output: '2'}}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Traffic:
    received: set[str] = field(default_factory=set)  # request ids of responses received whole
    ok: int = 0
    refused: int = 0  # 503 with Retry-After


async def one_request(session: aiohttp.ClientSession, base: str, key: str, stream: bool, traffic: Traffic) -> None:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
        raw = await resp.read()
        if resp.status == 503:
            assert resp.headers.get("Retry-After"), raw
            assert orjson.loads(raw)["error"]["type"] == "server_error"
            traffic.refused += 1
            return
        assert resp.status == 200, raw
    if stream:
        if not raw.endswith(b"data: [DONE]\n\n"):
            return  # an error event instead of the end: not a response received whole
        first = orjson.loads(raw.split(b"\n", 1)[0].removeprefix(b"data: "))
        response_id = first["id"]
    else:
        response_id = orjson.loads(raw)["id"]
    traffic.received.add(response_id.removeprefix("chatcmpl-"))
    traffic.ok += 1


async def load_until_killed(server: LiveServer, key: str, traffic: Traffic) -> None:
    """16 clients in a loop; SIGKILL to the gateway after 1.5 s; each client stops at its first error."""

    async def client(index: int) -> None:
        while True:
            try:
                await one_request(session, server.base_url, key, index % 4 == 0, traffic)
            except (TimeoutError, aiohttp.ClientError):
                return

    async def killer() -> None:
        await asyncio.sleep(KILL_AFTER_S)
        os.kill(server.process.pid, signal.SIGKILL)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.timeout(ROUND_LIMIT_S):
        await asyncio.gather(killer(), *(client(i) for i in range(CLIENTS)))
    server.process.wait(timeout=10)


async def ledger_counts(server: LiveServer, database_url: str | None) -> dict[str, int]:
    """request id → number of usage rows."""
    query = "SELECT request_id, count(*) FROM usage GROUP BY request_id"
    if database_url is None:
        con = sqlite3.connect(server.db_path)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            return {rid: n for rid, n in con.execute(query)}
        finally:
            con.close()
    conn = await asyncpg.connect(database_url)
    try:
        return {row[0]: row[1] for row in await conn.fetch(query)}
    finally:
        await conn.close()


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", backends())
async def test_every_response_received_whole_survives_kill_9(backend: str, upstream_port: int, tmp_path: Path) -> None:
    async with _database(backend) as database_url:
        config = write_config(tmp_path / "slipstream.yaml", upstream_port, database_url)
        data_dir = tmp_path / "data"
        traffic = Traffic()
        with run_server(data_dir, config) as first:
            key = first.create_key("crash")[1]
            token = first.admin_token
            await load_until_killed(first, key, traffic)
        for _ in range(ROUNDS - 1):
            with run_server(data_dir, config, {"SLIPSTREAM_ADMIN_TOKEN": token}, expect_token=False) as server:
                await load_until_killed(server, key, traffic)
        counts = await ledger_counts(first, database_url)
        missing = traffic.received - counts.keys()
        assert not missing, f"{len(missing)} of {len(traffic.received)} whole responses have no usage row"
        assert all(counts[rid] == 1 for rid in traffic.received)
        assert traffic.ok >= ROUNDS * CLIENTS, traffic.ok  # the load did run


@pytest.mark.timeout(300)
async def test_a_stopped_database_gets_503s_and_serving_resumes_by_itself(upstream_port: int, tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(start_cluster)
    if cluster is None:
        pytest.skip("PostgreSQL is not installed")
    try:
        async with fresh_database_url(cluster.url) as database_url:
            config = write_config(tmp_path / "slipstream.yaml", upstream_port, database_url, commit_timeout_s=2)
            traffic = Traffic()
            with run_server(tmp_path / "data", config) as server:
                key = server.create_key("outage")[1]
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
                    await one_request(session, server.base_url, key, False, traffic)
                    assert traffic.ok == 1
                    await asyncio.to_thread(cluster.pause)
                    for i in range(20):  # bounded: at most 20 requests while the database is down
                        await one_request(session, server.base_url, key, i % 2 == 1, traffic)
                        if traffic.refused >= 3:
                            break
                    assert traffic.refused >= 3
                    await asyncio.to_thread(cluster.resume)
                    ok_before, deadline = traffic.ok, time.monotonic() + 30
                    while traffic.ok == ok_before and time.monotonic() < deadline:
                        await one_request(session, server.base_url, key, False, traffic)
                        await asyncio.sleep(0.2)
                    assert traffic.ok > ok_before, "serving did not resume after the database came back"
                    await one_request(session, server.base_url, key, True, traffic)
                counts = await ledger_counts(server, database_url)
            unbilled = traffic.received - counts.keys()
            assert not unbilled, f"{len(unbilled)} responses with status 200 have no usage row"
    finally:
        await asyncio.to_thread(cluster.stop)


@asynccontextmanager
async def _database(backend: str) -> AsyncIterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    async with fresh_database_url(os.environ[POSTGRES_ENV]) as url:
        yield url
