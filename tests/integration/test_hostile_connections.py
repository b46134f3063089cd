"""Clients that try to hold the gateway without credentials, or hold a model by not reading.

Every limit is configured small (``http`` settings, about a second), so each test shows the
limit acting within its own timeout plus a margin: half-sent headers and bodies, idle
connections, an oversized header, too many connections, and streams whose client stops
reading, on the lent path (the runner writes the socket) and on the relay path.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from tests.support.server import LiveServer, run_server

LIMITS = """
http:
  header_timeout_s: 1
  body_timeout_s: 1
  keep_alive_timeout_s: 1
  write_timeout_s: 1
  max_header_bytes: 16384
  max_concurrency: {concurrency}
"""
FAKES = """
include_builtin_models: false
models:
  - id: fake-slow
    provider: fake
    upstream_model: slow
"""
LOCAL = """
engine:
  threads: 2
  lend_client_sockets: {lend}
models:
  - id: lent
    provider: local
    gguf: builtin:smollm2-135m-instruct
    context_length: 4096
    parallel: 2
    keep_alive: -1
"""
MARGIN_S = 2.0  # scheduling slack on a shared 2-core machine
ESSAY = [{"role": "user", "content": "Write a long essay about the sea."}]


@contextmanager
def _start(tmp: Path, models: str, concurrency: int = 1000) -> Iterator[LiveServer]:
    config = tmp / "config.yaml"
    config.write_text(LIMITS.format(concurrency=concurrency) + models)
    with run_server(tmp, config) as server:
        yield server


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _start(tmp_path_factory.mktemp("fakes"), FAKES) as server:
        yield server


@pytest.fixture(scope="module")
def fakes_key(fakes: LiveServer) -> str:
    return fakes.create_key("hostile")[1]


def connect(server: LiveServer, rcvbuf: int | None = None, mss: int | None = None) -> socket.socket:
    """A client socket; ``rcvbuf`` and ``mss`` make the kernel buffer little for a client that stops reading."""
    url = urlsplit(server.base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.settimeout(10)
    sock.connect((url.hostname, url.port))
    return sock


def post_head(path: str, key: str, length: int, close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n{connection}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def chat_request(key: str, body: dict[str, Any], close: bool = False) -> bytes:
    data = json.dumps(body).encode()
    return post_head("/v1/chat/completions", key, len(data), close) + data


def read_to_close(sock: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """Everything until the server ends the connection; ``True`` if it did so within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        except TimeoutError:
            break
        if not part:
            return data, True
        data += part
    return data, False


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    assert int(headers["content-length"]) == len(body), raw
    return int(lines[0].split()[1]), headers, json.loads(body)


def error_of(status: int, code: str) -> tuple[int, str, str]:
    return status, "server_error" if status >= 500 else "invalid_request_error", code


def assert_envelope(raw: bytes, status: int, code: str) -> dict[str, str]:
    got, headers, body = parse_answer(raw)
    err = body["error"]
    assert (got, err["type"], err["code"]) == error_of(status, code), raw
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    return headers


# -- before the key is checked: headers, bodies, idle connections ----------------------------


def test_a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout(fakes: LiveServer) -> None:
    sock = connect(fakes)
    started = time.monotonic()
    data, closed = read_to_close(sock, 1 + MARGIN_S)
    assert closed and data == b""  # nothing to answer: a plain close
    assert time.monotonic() - started >= 0.9
    sock.close()


def test_half_sent_headers_get_408_within_the_header_timeout(fakes: LiveServer) -> None:
    sock = connect(fakes)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Ty")
    started = time.monotonic()
    data, closed = read_to_close(sock, 1 + MARGIN_S)
    assert closed, "a slowloris kept its connection"
    assert time.monotonic() - started >= 0.9
    assert_envelope(data, 408, "request_timeout")
    sock.close()


def test_a_body_trickled_past_the_body_timeout_gets_408(fakes: LiveServer, fakes_key: str) -> None:
    """A byte every 0.2 s keeps the connection busy, but the whole body has one deadline."""
    sock = connect(fakes)
    sock.sendall(post_head("/v1/chat/completions", fakes_key, 1000) + b'{"model": ')
    started = time.monotonic()
    for _ in range(int((1 + MARGIN_S) / 0.2)):  # bounded: the answer comes first
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            break
        sock.sendall(b" ")
    data, closed = read_to_close(sock, 1 + MARGIN_S)
    assert closed, "a slow body kept its connection"
    assert 0.9 <= time.monotonic() - started <= 1 + 2 * MARGIN_S
    assert_envelope(data, 408, "request_timeout")
    assert fakes.usage_rows() == []  # refused before it was a call
    sock.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(fakes: LiveServer) -> None:
    sock = connect(fakes)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    first = b""
    while b'{"status":"ok"}' not in first:
        part = sock.recv(65536)
        assert part, first
        first += part
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    data, closed = read_to_close(sock, 1 + MARGIN_S)
    assert closed and data == b"", "an idle connection stayed open past keep_alive_timeout_s"
    assert time.monotonic() - started >= 0.9
    sock.close()


def _rss(server: LiveServer) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


def _send_oversized(server: LiveServer, size: int) -> bytes:
    sock = connect(server)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * size + b"\r\n\r\n")
        data, closed = read_to_close(sock, 1 + MARGIN_S)
        assert closed
        return data
    finally:
        sock.close()


def test_an_oversized_header_gets_431_and_costs_no_memory(fakes: LiveServer) -> None:
    assert_envelope(_send_oversized(fakes, 64 * 1024), 431, "request_header_fields_too_large")  # warms the path
    before = _rss(fakes)
    data = _send_oversized(fakes, 8 * 1024 * 1024)  # was read whole: +30 MiB of RSS for a 30 MiB header
    assert_envelope(data, 431, "request_header_fields_too_large")
    grown = _rss(fakes) - before
    assert grown < 2 * 1024 * 1024, f"the gateway grew by {grown} bytes for one refused header"
    sock = connect(fakes)  # and the gateway still serves
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    data, _ = read_to_close(sock, 5)
    assert data.startswith(b"HTTP/1.1 200")
    sock.close()


def test_a_request_beyond_max_concurrency_gets_503_with_retry_after(tmp_path: Path) -> None:
    limit = 3
    with _start(tmp_path, FAKES, concurrency=limit) as server:
        key = server.create_key("busy")[1]
        words = " ".join(["word"] * 30)  # the slow fake streams 20 words a second
        body = {"model": "fake-slow", "messages": [{"role": "user", "content": words}], "stream": True}
        busy = [connect(server) for _ in range(limit)]
        for sock in busy:
            sock.sendall(chat_request(key, body))
            assert sock.recv(12) == b"HTTP/1.1 200"
        extra = connect(server)
        extra.sendall(chat_request(key, body))
        data, closed = read_to_close(extra, 5)
        assert closed
        headers = assert_envelope(data, 503, "server_overloaded")
        assert headers["retry-after"] == "1"
        for sock in busy:  # the streams in flight were not disturbed
            data, _ = read_to_close(sock, 10)
            assert b"data: [DONE]" in data
            sock.close()
        extra.close()
        again = connect(server)
        again.sendall(chat_request(key, {**body, "stream": False}))
        assert again.recv(12) == b"HTTP/1.1 200"
        again.close()


# -- a client that stops reading a stream ----------------------------------------------------


@pytest.fixture(scope="module")
def lending(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _start(tmp_path_factory.mktemp("lending"), LOCAL.format(lend="true")) as server:
        yield server


@pytest.fixture(scope="module")
def relaying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _start(tmp_path_factory.mktemp("relaying"), LOCAL.format(lend="false")) as server:
        yield server


def runner_row(server: LiveServer) -> dict[str, Any]:
    status, body = server.control("GET", "/v2/gen-ai/runners")
    assert status == 200, body
    return {row["model"]: row for row in body["runners"]}["lent"]


def finish_small_stream(server: LiveServer, key: str) -> bytes:
    """A short stream read whole on a connection the client closes: it loads the runner if needed."""
    sock = connect(server)
    try:
        body = {"model": "lent", "messages": ESSAY, "max_tokens": 3, "stream": True}
        sock.sendall(chat_request(key, body, close=True))
        reply, closed = read_to_close(sock, 120)  # a cold start included
        assert closed and reply.startswith(b"HTTP/1.1 200"), reply[:300]
        assert b"data: [DONE]" in reply
        return reply
    finally:
        sock.close()


def stall_a_stream(server: LiveServer, lent_expected: bool) -> None:
    key = server.create_key("stalls")[1]
    finish_small_stream(server, key)  # a loaded runner: only those take lent streams
    before = runner_row(server)
    sock = connect(server, rcvbuf=1024, mss=88)  # ~40 KB of kernel buffers between us and the writer
    max_tokens = 4000  # minutes of work: only a cancellation ends it early
    body = {"model": "lent", "messages": ESSAY, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "n": 2, "logprobs": True, "top_logprobs": 20}  # fmt: skip  # ~4 KB per step: the buffers fill fast
    sock.sendall(chat_request(key, body))
    started = time.monotonic()
    head = b""
    while b"\r\n\r\n" not in head:
        part = sock.recv(4096)
        assert part, head
        head += part
    assert head.startswith(b"HTTP/1.1 200"), head[:300]
    found = re.search(rb"x-request-id: (\w+)", head)
    assert found is not None
    request_id = found.group(1).decode()
    # From here the client reads nothing. Filling the buffers (~40 KB, plus the gateway's 64 KB on
    # the relay) takes a second or two, then the write timeout (1 s) runs; a busy machine is slower.
    row = server.wait_usage(request_id, timeout=60)
    elapsed = time.monotonic() - started
    assert row["status"] == "cancelled" and row["http_status"] == 499, row
    assert 0 < row["completion_tokens"] < max_tokens, row
    assert elapsed >= 1.0, "cancelled before the write timeout could have run"
    _, closed = read_to_close(sock, 5)  # the server reset the connection
    assert closed
    sock.close()
    deadline = time.monotonic() + 5
    while (runner_row(server)["active"] or runner_row(server)["slots_in_use"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = runner_row(server)
    assert after["active"] == 0 and after["slots_in_use"] == 0, after  # lease and slot freed
    assert after["pid"] == before["pid"]
    assert after["lent_streams"] == before["lent_streams"] + (1 if lent_expected else 0)
    finish_small_stream(server, key)  # the same runner serves the next request


def test_a_client_that_stops_reading_a_lent_stream_is_cancelled_and_billed(lending: LiveServer) -> None:
    stall_a_stream(lending, lent_expected=True)


def test_a_client_that_stops_reading_a_relayed_stream_is_cancelled_and_billed(relaying: LiveServer) -> None:
    stall_a_stream(relaying, lent_expected=False)
