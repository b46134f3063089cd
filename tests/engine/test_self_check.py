"""The runner's start-up self-check: it runs before READY, leaves no trace, and its fault switch crashes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

from slipstream.catalog import builtin_gguf_path
from slipstream.engine.core.self_check import FAULT_ENV, GENERATE, MIN_PROMPT_TOKENS
from tests.engine.conftest import start_runner


def runner_cmd() -> list[str]:
    return [sys.executable, "-m", "slipstream.engine.runner", "--model", str(builtin_gguf_path()),
            "--model-id", "smollm2", "--port", "0", "--threads", "2"]  # fmt: skip


def run_with_fault(fault: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, FAULT_ENV: fault}
    return subprocess.run(runner_cmd(), capture_output=True, text=True, env=env, timeout=60, check=False)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def test_ready_reports_a_batched_prefill_and_decode_steps_that_leave_no_trace() -> None:
    with start_runner("--parallel", "2", "--n-ctx", "512") as runner:
        check = runner.ready["self_check"]
        assert check["prompt_tokens"] >= MIN_PROMPT_TOKENS and check["generated"] == GENERATE  # type: ignore[index]
        assert check["seconds"] > 0  # type: ignore[index]
        status = get_json(runner.base + "/status")
        assert (status["tokens_generated"], status["admitted_requests"], status["queue_wait_s_total"]) == (0, 0, 0)
        assert (status["active"], status["slots_in_use"]) == (0, 0)
        assert status["last_active_at"] == status["loaded_at"]
        reply = runner.client().chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
        assert reply.usage.prompt_tokens_details.cached_tokens == 0
        assert get_json(runner.base + "/status")["admitted_requests"] == 1


def test_the_segv_fault_kills_the_runner_before_ready() -> None:
    result = run_with_fault("segv")
    assert result.returncode == -11
    assert "SLIPSTREAM_RUNNER_READY" not in result.stdout


def test_an_unknown_fault_fails_the_self_check_with_status_3() -> None:
    result = run_with_fault("boom")
    assert result.returncode == 3
    assert "SLIPSTREAM_RUNNER_READY" not in result.stdout
    assert f"engine self-check failed for {builtin_gguf_path()}: unknown {FAULT_ENV}='boom'" in result.stderr
