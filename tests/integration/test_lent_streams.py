"""Streams of a loaded local model are written by the runner to the client's own socket.

The gateway lends the connection (``protocol/handoff.py``); these tests hold it to the relay's
behaviour byte for byte, and check the framing, billing and cancellation that the gateway no
longer sees token by token.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.server import LiveServer, run_server

CATALOG = """
engine:
  threads: 2
  lend_client_sockets: {lend}
models:
  - id: lent
    provider: local
    gguf: builtin:smollm2-135m-instruct
    context_length: 1024
    parallel: 2
    keep_alive: -1
"""
ESSAY = [{"role": "user", "content": "Write a long essay about the sea."}]
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "include_usage": {"stream_options": {"include_usage": True}},
    "continuous_usage": {"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    "n2_logprobs": {"n": 2, "logprobs": True, "top_logprobs": 2},
    "stop": {"stop": [" the", "."]},
}


def _server(tmp: Path, lend: bool) -> Iterator[LiveServer]:
    config = tmp / "catalog.yaml"
    config.write_text(CATALOG.format(lend=str(lend).lower()))
    with run_server(tmp, config) as server:
        yield server


@pytest.fixture(scope="module")
def lending(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory.mktemp("lending"), lend=True)


@pytest.fixture(scope="module")
def relaying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory.mktemp("relaying"), lend=False)


@pytest.fixture(scope="module")
def keys(lending: LiveServer, relaying: LiveServer) -> dict[str, str]:
    return {"lending": lending.create_key("lend")[1], "relaying": relaying.create_key("relay")[1]}


class RawConnection:
    """One keep-alive HTTP/1.1 connection that checks the chunked framing byte by byte."""

    def __init__(self, base_url: str, rcvbuf: int | None = None) -> None:
        url = urlsplit(base_url)
        self.host = f"{url.hostname}:{url.port}"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(60)
        self.sock.connect((url.hostname, url.port))
        self.buffer = b""

    def send(self, key: str, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + data)

    def _fill(self) -> None:
        part = self.sock.recv(65536)
        assert part, "connection closed mid-response"
        self.buffer += part

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split()[1])
        headers = {}
        while line := self._line():
            name, value = line.decode().split(":", 1)
            headers[name.lower()] = value.strip()
        assert headers.get("transfer-encoding") == "chunked", headers
        body = b""
        while True:
            size = int(self._line(), 16)
            while len(self.buffer) < size + 2:
                self._fill()
            chunk, tail, self.buffer = self.buffer[:size], self.buffer[size : size + 2], self.buffer[size + 2 :]
            assert tail == b"\r\n", "chunk not followed by CRLF: the framing is broken"
            if size == 0:
                return status, headers, body
            body += chunk

    def close(self) -> None:
        self.sock.close()


def events(body: bytes) -> list[Any]:
    out = []
    for block in body.decode().split("\n\n"):
        if block.startswith(":") or not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(server: LiveServer, key: str, extra: dict[str, Any], max_tokens: int = 24) -> tuple[str, bytes]:
    conn = RawConnection(server.base_url)
    try:
        body = {"model": "lent", "messages": ESSAY, "max_tokens": max_tokens, "temperature": 0, "stream": True}
        conn.send(key, {**body, **extra})
        status, headers, raw = conn.read_response()
        assert status == 200, raw
        return headers["x-request-id"], raw
    finally:
        conn.close()


def runner_row(server: LiveServer) -> dict[str, Any]:
    status, body = server.control("GET", "/v2/gen-ai/runners")
    assert status == 200, body
    return {row["model"]: row for row in body["runners"]}["lent"]


def _normalised(raw: bytes) -> str:
    """Our id and creation time differ per response; nothing else may."""
    text = re.sub(rb'"id":"chatcmpl-[0-9a-f]+"', b'"id":"ID"', raw)
    return re.sub(rb'"created":\d+', b'"created":0', text).decode()


def test_a_lent_stream_is_byte_for_byte_the_relayed_stream(
    lending: LiveServer, relaying: LiveServer, keys: dict[str, str]
) -> None:
    for name, server in (("lending", lending), ("relaying", relaying)):
        stream(server, keys[name], {}, max_tokens=2)  # the cold start is relayed on both
    lent_before = runner_row(lending)["lent_streams"]
    for variant, extra in VARIANTS.items():
        _, lent = stream(lending, keys["lending"], extra)
        _, relayed = stream(relaying, keys["relaying"], extra)
        assert _normalised(lent) == _normalised(relayed), variant
        assert events(lent)[-1] == "[DONE]"
    assert runner_row(lending)["lent_streams"] == lent_before + len(VARIANTS)
    assert runner_row(relaying)["lent_streams"] == 0


def test_a_lent_stream_is_billed_exactly(lending: LiveServer, keys: dict[str, str]) -> None:
    stream(lending, keys["lending"], {}, max_tokens=2)
    before = runner_row(lending)["lent_streams"]
    request_id, raw = stream(lending, keys["lending"], VARIANTS["include_usage"], max_tokens=30)
    assert runner_row(lending)["lent_streams"] == before + 1
    usage = events(raw)[-2]["usage"]
    row = lending.wait_usage(request_id)
    assert row["status"] == "ok" and row["http_status"] == 200 and row["stream"] == 1
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row["cached_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] < row["latency_ms"]


def test_a_large_stream_read_late_arrives_whole_on_a_reusable_connection(
    lending: LiveServer, keys: dict[str, str]
) -> None:
    """Chunks of ~2 KB (20 logprobs each) left unread for 3 s; then the connection serves a second request.

    Loopback's send buffer grows to 4 MB, so the runner's writes rarely block here: the
    full-socket path is covered by ``tests/unit/test_lent_socket.py`` on a 4 KB socketpair."""
    stream(lending, keys["lending"], {}, max_tokens=2)
    conn = RawConnection(lending.base_url, rcvbuf=4096)
    try:
        body = {"model": "lent", "messages": ESSAY, "max_tokens": 120, "temperature": 0, "stream": True,
                "logprobs": True, "top_logprobs": 20, "stream_options": {"include_usage": True},
                "ignore_eos": True}  # fmt: skip
        conn.send(keys["lending"], body)
        time.sleep(3)  # the runner fills the socket and must wait for us
        status, _, raw = conn.read_response()
        assert status == 200
        got = events(raw)
        assert got[-1] == "[DONE]" and got[-2]["usage"]["completion_tokens"] == 120
        tokens = sum(len(c["choices"][0]["logprobs"]["content"]) for c in got[:-2] if c["choices"][0]["logprobs"])
        assert tokens == 120
        conn.send(keys["lending"], {"model": "lent", "messages": ESSAY, "max_tokens": 3, "stream": True})
        status, _, raw = conn.read_response()  # the same connection, after a lent response
        assert status == 200 and events(raw)[-1] == "[DONE]"
    finally:
        conn.close()


def test_a_client_that_leaves_a_lent_stream_is_billed_and_frees_its_slot(
    lending: LiveServer, keys: dict[str, str]
) -> None:
    stream(lending, keys["lending"], {}, max_tokens=2)
    before = runner_row(lending)["lent_streams"]
    conn = RawConnection(lending.base_url)
    conn.send(keys["lending"], {"model": "lent", "messages": ESSAY, "max_tokens": 500, "stream": True,
                                "ignore_eos": True})  # fmt: skip
    while b'"content":"' not in conn.buffer or conn.buffer.count(b"data: ") < 6:
        conn._fill()
    request_id = re.search(rb"x-request-id: (\w+)", conn.buffer)
    assert request_id is not None
    conn.close()
    row = lending.wait_usage(request_id.group(1).decode())
    assert row["status"] == "cancelled" and row["http_status"] == 499
    assert 4 <= row["completion_tokens"] < 500
    deadline = time.monotonic() + 5
    while runner_row(lending)["slots_in_use"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner_row(lending)["slots_in_use"] == 0
    assert runner_row(lending)["lent_streams"] == before + 1
