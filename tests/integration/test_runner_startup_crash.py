"""A runner whose engine crashes at start-up: a clear 503, one error row per request, back-off, ``models ps``.

The gateway runs with the runner's test-only fault switch set, so every runner it spawns kills
itself with SIGSEGV in its self-check, as llama.cpp built with AMX kernels did on the first batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slipstream.cpu import cpu_has_amx
from slipstream.engine.core.self_check import FAULT_ENV
from slipstream.runners.exit_cause import AMX_HINT, DOCTOR_HINT
from tests.support.http import Reply, post_json, request
from tests.support.server import LiveServer, run_server

FIXTURES = Path(__file__).parents[1] / "fixtures"
HELLO = [{"role": "user", "content": "Say hello."}]
HINT = AMX_HINT if cpu_has_amx() else DOCTOR_HINT
CAUSE = f"The local engine crashed with SIGSEGV (signal 11) while loading twin; {HINT}"
SERVING = f"The local engine crashed with SIGSEGV (signal 11) while serving twin; {HINT}"


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    with run_server(tmp_path_factory.mktemp("crashing"), FIXTURES / "engine.yaml", {FAULT_ENV: "segv"}) as server:
        yield server, server.create_key("crash")[1]


def chat(server: LiveServer, key: str, **extra: Any) -> Reply:
    return post_json(server.openai_base + "/chat/completions", {"model": "twin", "messages": HELLO, **extra}, key)


def runner_rows(server: LiveServer) -> list[dict[str, Any]]:
    status, body = server.control("GET", "/v2/gen-ai/runners")
    assert status == 200, body
    rows: list[dict[str, Any]] = body["runners"]
    return rows


def assert_503_with_one_error_row(server: LiveServer, reply: Reply, retry_after: int, stream: int = 0) -> str:
    assert reply.status == 503, reply.body
    assert reply.headers["retry-after"] == str(retry_after)
    error = reply.body["error"]
    assert (error["code"], error["type"]) == ("model_unavailable", "server_error")
    row = server.wait_usage(reply.headers["x-request-id"])
    assert (row["status"], row["http_status"], row["model"], row["stream"]) == ("error", 503, "twin", stream)
    message: str = error["message"]
    return message


def cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLIPSTREAM_API_URL": server.base_url, "SLIPSTREAM_ADMIN_TOKEN": server.admin_token}
    slipstream = str(Path(sys.executable).with_name("slipstream"))
    return subprocess.run([slipstream, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_a_crash_at_start_up_names_its_cause_and_backs_off(crashing: tuple[LiveServer, str]) -> None:
    server, key = crashing
    first = chat(server, key, max_tokens=4)
    message = assert_503_with_one_error_row(server, first, retry_after=2)
    assert message == CAUSE + "."

    # backing off: an immediate 503 with the same cause, no second runner (the failure count stays 1)
    again = chat(server, key, max_tokens=4, stream=True)
    assert_503_with_one_error_row(server, again, retry_after=int(again.headers["retry-after"]), stream=1)
    assert again.headers["retry-after"] in ("1", "2")
    assert again.body["error"]["message"].startswith(message)
    assert "Not retrying for" in again.body["error"]["message"]
    (row,) = runner_rows(server)
    assert (row["model"], row["state"], row["failures"], row["cause"]) == ("twin", "backoff", 1, message)
    assert 0 < row["retry_in_s"] <= 2

    # once the wait is over the next request tries again, fails again, and waits twice as long
    time.sleep(row["retry_in_s"] + 0.1)
    third = chat(server, key, max_tokens=4)
    assert assert_503_with_one_error_row(server, third, retry_after=4) == message
    (row,) = runner_rows(server)
    assert (row["state"], row["failures"]) == ("backoff", 2)

    table = cli(server, "models", "ps")
    assert table.returncode == 0, table.stderr
    assert "No models are loaded." in table.stdout and "Failed to start" in table.stdout
    assert "twin" in table.stdout and "backoff" in table.stdout and "SIGSEGV" in table.stdout
    raw = cli(server, "models", "ps", "--output", "json")
    assert raw.returncode == 0, raw.stderr
    (shown,) = json.loads(raw.stdout)["runners"]
    assert (shown["model"], shown["state"], shown["failures"], shown["cause"]) == ("twin", "backoff", 2, message)


def test_metrics_count_no_runner_for_a_model_backing_off(crashing: tuple[LiveServer, str]) -> None:
    server, key = crashing
    assert chat(server, key, max_tokens=4).status == 503
    assert runner_rows(server)[0]["state"] == "backoff"
    metrics = request("GET", server.base_url + "/metrics").body
    assert "slipstream_loaded_runners 0.0" in metrics


def test_a_crash_under_the_first_request_names_its_cause_and_the_next_request_recovers(
    tmp_path: Path,
) -> None:
    """The failure as users saw it before the self-check: the engine dies on its first real decode."""
    with run_server(tmp_path, FIXTURES / "engine.yaml", {FAULT_ENV: "segv-after-ready"}) as server:
        key = server.create_key("crash-late")[1]
        reply = chat(server, key, max_tokens=4)
        message = assert_503_with_one_error_row(server, reply, retry_after=1)
        assert message == SERVING + "."
        assert runner_rows(server) == []  # a crash after READY is no failed start: no back-off
        again = chat(server, key, max_tokens=4)
        assert assert_503_with_one_error_row(server, again, retry_after=1) == message
