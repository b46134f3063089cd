"""Serverless behaviour of local runners: scale to zero, eviction, crashes, full queues, disconnects."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest
from openai import OpenAI

from tests.support.server import LiveServer, run_server

FIXTURES = Path(__file__).parents[1] / "fixtures"
HELLO = [{"role": "user", "content": "Say hello."}]
ESSAY = [{"role": "user", "content": "Write a long essay about the sea."}]


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with run_server(tmp_path_factory.mktemp("engine"), FIXTURES / "engine.yaml") as server:
        yield server


@pytest.fixture(scope="module")
def sdk(engine_server: LiveServer) -> OpenAI:
    _, key = engine_server.create_key("engine")
    return OpenAI(base_url=engine_server.openai_base, api_key=key, max_retries=0, timeout=120)


def runners(server: LiveServer) -> dict[str, dict[str, Any]]:
    status, body = server.control("GET", "/v2/gen-ai/runners")
    assert status == 200, body
    return {row["model"]: row for row in body["runners"]}


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_runner_scales_to_zero_and_cold_starts_again(sdk: OpenAI, engine_server: LiveServer) -> None:
    assert sdk.chat.completions.create(model="brief", messages=HELLO, max_tokens=4).choices
    pid = runners(engine_server)["brief"]["pid"]
    assert psutil.pid_exists(pid)
    wait_for(lambda: "brief" not in runners(engine_server))
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    assert sdk.chat.completions.create(model="brief", messages=HELLO, max_tokens=4).choices
    assert runners(engine_server)["brief"]["pid"] != pid


def test_max_loaded_models_evicts_the_idle_runner(sdk: OpenAI, engine_server: LiveServer) -> None:
    assert sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=4).choices
    twin_pid = runners(engine_server)["twin"]["pid"]
    assert sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=4).choices
    loaded = runners(engine_server)
    assert list(loaded) == ["single-slot"]
    wait_for(lambda: not psutil.pid_exists(twin_pid) or psutil.Process(twin_pid).status() == psutil.STATUS_ZOMBIE)


def test_ps_shows_runner_details(sdk: OpenAI, engine_server: LiveServer) -> None:
    sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=2)
    row = runners(engine_server)["twin"]
    assert row["rss_bytes"] > 50 * 1024**2
    assert row["context_length"] == 1024 and row["parallel"] == 2
    assert row["active"] == 0 and row["queued"] == 0 and row["idle_for_s"] >= 0
    assert row["loaded_at"] <= time.time()
    cmdline = psutil.Process(row["pid"]).cmdline()
    assert cmdline[cmdline.index("--kv-type") + 1] == "f16"
    assert cmdline[cmdline.index("--n-ctx") + 1] == "1024"


def test_runners_listen_only_on_a_private_unix_socket(sdk: OpenAI, engine_server: LiveServer) -> None:
    """No other local user can reach a model past the gateway's keys: no TCP port, a 0600 socket in a 0700 dir."""
    sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=2)
    proc = psutil.Process(runners(engine_server)["twin"]["pid"])
    assert [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
    cmdline = proc.cmdline()
    sock = Path(cmdline[cmdline.index("--socket") + 1])
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700


def test_kill_mid_stream_gives_error_event_error_row_and_recovery(sdk: OpenAI, engine_server: LiveServer) -> None:
    sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=2)
    pid = runners(engine_server)["twin"]["pid"]
    with sdk.chat.completions.with_streaming_response.create(
        model="twin", messages=ESSAY, max_tokens=500, stream=True, extra_body={"ignore_eos": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        seen = 0
        with pytest.raises(openai.APIError):
            for _chunk in response.parse():
                seen += 1
                if seen == 3:
                    os.kill(pid, signal.SIGKILL)
    row = engine_server.wait_usage(request_id)
    assert row["status"] == "error" and row["http_status"] >= 500
    assert row["completion_tokens"] >= 2
    assert sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=4).choices
    assert runners(engine_server)["twin"]["pid"] != pid


def _long_request(sdk: OpenAI) -> int:
    try:
        sdk.chat.completions.create(
            model="single-slot", messages=ESSAY, max_tokens=150, extra_body={"ignore_eos": True}
        )
        return 200
    except openai.RateLimitError as exc:
        assert exc.response.headers["retry-after"].isdigit()
        assert exc.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        return 429


def test_full_queue_answers_429_with_retry_after(sdk: OpenAI) -> None:
    sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=2)
    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: _long_request(sdk), range(4)))
    assert statuses.count(429) >= 1
    assert statuses.count(200) >= 2


def test_disconnect_frees_the_slot(sdk: OpenAI, engine_server: LiveServer) -> None:
    sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=2)
    with sdk.chat.completions.with_streaming_response.create(
        model="single-slot", messages=ESSAY, max_tokens=500, stream=True, extra_body={"ignore_eos": True}
    ) as response:
        for i, _ in enumerate(response.parse()):
            if i == 3:
                assert runners(engine_server)["single-slot"]["slots_in_use"] == 1
                break
    wait_for(lambda: runners(engine_server)["single-slot"]["slots_in_use"] == 0, timeout=2.0)
    assert sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=2).choices


def test_models_ps_cli_shows_the_loaded_runner(sdk: OpenAI, engine_server: LiveServer) -> None:
    sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=2)
    pid = runners(engine_server)["twin"]["pid"]
    env = {
        **os.environ,
        "SLIPSTREAM_API_URL": engine_server.base_url,
        "SLIPSTREAM_ADMIN_TOKEN": engine_server.admin_token,
    }
    cli = str(Path(sys.executable).with_name("slipstream"))
    table = subprocess.run([cli, "models", "ps"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert table.returncode == 0, table.stderr
    assert "twin" in table.stdout and str(pid) in table.stdout and "forever" in table.stdout
    assert "0/2" in table.stdout and "1024" in table.stdout and "MiB" in table.stdout
    raw = subprocess.run([cli, "models", "ps", "-o", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(raw.stdout)["runners"][0]["pid"] == pid


def test_kill_before_the_first_byte_is_503_with_retry_after(sdk: OpenAI, engine_server: LiveServer) -> None:
    sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=2)
    pid = runners(engine_server)["twin"]["pid"]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            sdk.chat.completions.create, model="twin", messages=ESSAY, max_tokens=400, extra_body={"ignore_eos": True}
        )
        wait_for(lambda: runners(engine_server)["twin"]["slots_in_use"] == 1)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(openai.APIStatusError) as info:
            pending.result(timeout=60)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"].isdigit()
    assert info.value.body["code"] == "model_unavailable"  # type: ignore[index]
    assert info.value.body["message"] == (  # type: ignore[index]
        "The local engine was stopped by SIGKILL (signal 9) while serving twin; "
        "it may have run out of memory; run `slipstream doctor` to check the engine build."
    )
    row = engine_server.wait_usage(info.value.response.headers["x-request-id"])
    assert row["status"] == "error" and row["http_status"] == 503
    assert sdk.chat.completions.create(model="twin", messages=HELLO, max_tokens=4).choices


def test_kill_while_a_stream_waits_in_the_queue_is_503_with_retry_after(sdk: OpenAI, engine_server: LiveServer) -> None:
    """A lent stream's head waits for its first output, so a crash before it is still a status code."""
    sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=2)
    pid = runners(engine_server)["single-slot"]["pid"]
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(
            sdk.chat.completions.create, model="single-slot", messages=ESSAY, max_tokens=400,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        wait_for(lambda: runners(engine_server)["single-slot"]["slots_in_use"] == 1)
        queued = pool.submit(
            lambda: list(sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=4, stream=True))
        )
        wait_for(lambda: runners(engine_server)["single-slot"]["queued"] == 1)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(openai.APIStatusError) as info:
            queued.result(timeout=60)
        with pytest.raises(openai.APIError):
            busy.result(timeout=60)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"].isdigit()
    assert info.value.body["code"] == "model_unavailable"  # type: ignore[index]
    row = engine_server.wait_usage(info.value.response.headers["x-request-id"])
    assert row["status"] == "error" and row["http_status"] == 503 and row["stream"] == 1
    assert sdk.chat.completions.create(model="single-slot", messages=HELLO, max_tokens=4).choices
