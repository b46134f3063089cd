"""Starting one runner process and waiting until it says it is ready.

Kept apart from the supervisor so that tests can swap the factory, as ollama's scheduler does.
A runner that exits or hangs before its READY line raises ``RunnerStartFailed`` naming the cause
(``exit_cause.py``); the supervisor backs off before trying that model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from slipstream.errors import ModelUnavailable
from slipstream.runners.exit_cause import DOCTOR_HINT, describe_start_failure
from slipstream.runners.stderr_tail import StderrTail

log = logging.getLogger(__name__)
READY_MARKER = b"SLIPSTREAM_RUNNER_READY "
_PR_SET_PDEATHSIG = 1
STDERR_GRACE_S = 1.0  # how long a dead runner's last stderr bytes may take to arrive


class RunnerStartFailed(ModelUnavailable):
    """The runner process exited or hung before it was ready; ``message`` says why and what to do."""


@dataclass(frozen=True, slots=True)
class RunnerSpec:
    """Everything a runner process needs to serve one catalog entry."""

    model_id: str
    gguf: Path
    n_ctx: int
    parallel: int
    queue_size: int
    threads: int
    chat_template: str | None = None
    kv_cache_type: str = "q8_0"
    host_cache_mib: int = 1024
    socket_dir: Path | None = None  # serve on a Unix socket in this private directory, else TCP loopback

    def argv(self, socket: Path | None = None) -> list[str]:
        if socket:
            listen = ["--socket", str(socket), "--handoff-socket", str(socket.with_suffix(".handoff"))]
        else:
            listen = ["--host", "127.0.0.1", "--port", "0"]
        args = [
            sys.executable, "-m", "slipstream.engine.runner",
            "--model", str(self.gguf), "--model-id", self.model_id, *listen,
            "--n-ctx", str(self.n_ctx), "--parallel", str(self.parallel),
            "--queue-size", str(self.queue_size), "--threads", str(self.threads),
            "--kv-type", self.kv_cache_type, "--host-cache-mib", str(self.host_cache_mib),
        ]  # fmt: skip
        if self.chat_template:
            args += ["--chat-template", self.chat_template]
        return args


@dataclass(slots=True)
class StartedRunner:
    process: asyncio.subprocess.Process
    port: int  # 0 when serving on a Unix socket
    info: dict[str, Any]
    startup_s: float
    socket: str | None = None
    handoff: str | None = None  # where the runner takes lent client sockets (protocol/handoff.py)
    stderr: StderrTail | None = None  # forwards the runner's stderr for as long as it lives
    stdout: asyncio.Task[None] | None = None  # reads the runner's stdout after READY, so its pipe never fills

    @property
    def base_url(self) -> str:
        # over a Unix socket the host is a placeholder: the session's connector decides where to go
        return "http://runner" if self.socket else f"http://127.0.0.1:{self.port}"


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the runner if the gateway dies, so no runner outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn_runner(spec: RunnerSpec, timeout_s: float) -> StartedRunner:
    """Start the process and return once it printed its READY line; kill it on any failure."""
    if not spec.gguf.is_file():
        raise ModelUnavailable(f"The model file for '{spec.model_id}' is missing: {spec.gguf}")
    started = time.perf_counter()
    socket = spec.socket_dir / f"{secrets.token_hex(6)}.sock" if spec.socket_dir else None
    proc = await asyncio.create_subprocess_exec(
        *spec.argv(socket),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    code = await proc.wait()
                    await stderr.finished(STDERR_GRACE_S)
                    raise RunnerStartFailed(describe_start_failure(spec.model_id, code, stderr.lines()))
                if line.startswith(READY_MARKER):
                    info: dict[str, Any] = orjson.loads(line[len(READY_MARKER) :])
                    break
    except TimeoutError:
        await stop_process(proc)
        raise RunnerStartFailed(
            f"The local engine did not finish loading {spec.model_id} within {timeout_s:.0f}s; {DOCTOR_HINT}."
        ) from None
    except BaseException:
        await stop_process(proc)
        stderr.cancel()
        raise
    drain = asyncio.get_running_loop().create_task(_drain(proc.stdout))  # held here: the loop holds tasks weakly
    return StartedRunner(
        proc, int(info["port"]), info, time.perf_counter() - started, info.get("socket"), info.get("handoff"), stderr,
        drain,
    )  # fmt: skip


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def stop_process(proc: asyncio.subprocess.Process, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after a grace period; always reaps the child."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(grace_s):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
