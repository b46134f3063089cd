"""A real runner subprocess per module, driven over HTTP like the gateway drives it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI

from slipstream.catalog import builtin_gguf_path


@dataclass
class Runner:
    proc: subprocess.Popen[str]
    port: int
    ready: dict[str, int]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw: object) -> OpenAI:
        return OpenAI(base_url=self.base + "/v1", api_key="unused", max_retries=0, timeout=60, **kw)  # type: ignore[arg-type]


@contextmanager
def start_runner(*extra: str, timeout: float = 60.0, stderr: Path | None = None) -> Iterator[Runner]:
    """A runner on a free port; its stderr goes to ``stderr`` when given (for tests that read it)."""
    cmd = [sys.executable, "-m", "slipstream.engine.runner", "--model", str(builtin_gguf_path()),
           "--model-id", "smollm2", "--port", "0", "--threads", "2", *extra]  # fmt: skip
    with contextlib.ExitStack() as files:
        err = files.enter_context(stderr.open("w")) if stderr is not None else subprocess.PIPE
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(timeout)
    try:
        if not line or not line[0].startswith("SLIPSTREAM_RUNNER_READY "):
            proc.kill()
            said = stderr.read_text() if stderr is not None else proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"runner did not become ready: {line!r}\n{said[-2000:]}")
        ready = json.loads(line[0].split(" ", 1)[1])
        yield Runner(proc, ready["port"], ready)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    with start_runner("--parallel", "4", "--n-ctx", "2048") as r:
        yield r


@pytest.fixture(scope="module")
def client(runner: Runner) -> OpenAI:
    return runner.client()
