"""Loads runners on demand and unloads them when idle: the "serverless" in Slipstream.

One runner per catalog id. A runner starts on the first request (a cold start), stays up for
its entry's ``keep_alive`` after the last request finishes (0: stop at once, -1: never), and
is evicted least-recently-used when ``max_loaded_models`` or the memory budget needs room.
A runner that dies is forgotten, so the next request starts a fresh one. A runner that dies
before it is ready puts its model in back-off (``backoff.py``): requests get the cause as a 503
at once instead of each spawning another doomed runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from slipstream.catalog import ModelEntry, resolve_gguf
from slipstream.config import EngineSettings
from slipstream.errors import ModelUnavailable
from slipstream.runners.backoff import StartBackoff, retry_after
from slipstream.runners.exit_cause import describe_exit
from slipstream.runners.process import RunnerSpec, RunnerStartFailed, StartedRunner, spawn_runner, stop_process
from slipstream.upstream.client import OpenAICompatClient, new_session

log = logging.getLogger(__name__)
SpawnFn = Callable[[RunnerSpec, float], Awaitable[StartedRunner]]


@dataclass(eq=False)
class Runner:
    """A loaded runner as the gateway sees it."""

    spec: RunnerSpec
    keep_alive: float
    started: StartedRunner
    session: aiohttp.ClientSession
    client: OpenAICompatClient
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0
    idle_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self.started.process.pid

    @property
    def base_url(self) -> str:
        return self.started.base_url

    @property
    def alive(self) -> bool:
        return self.started.process.returncode is None

    async def exit_code(self, grace_s: float = 0.2) -> int | None:
        """The exit status if the process has died, or dies within ``grace_s``: a crash drops the
        connection a moment before the process is reaped."""
        proc = self.started.process
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), grace_s)
        return proc.returncode

    def rss_bytes(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0


def estimate_bytes(spec: RunnerSpec) -> int:
    """Memory a runner will need before it exists: weights plus a generous allowance for KV and runtime."""
    return int(spec.gguf.stat().st_size * 1.5) + 256 * 1024**2


class Supervisor:
    def __init__(
        self, settings: EngineSettings, spawn: SpawnFn = spawn_runner, backoff: StartBackoff | None = None
    ) -> None:
        self._settings = settings
        self._spawn = spawn
        self._backoff = backoff or StartBackoff()
        self._runners: dict[str, Runner] = {}
        self._starting: dict[str, asyncio.Task[Runner]] = {}
        self._lock = asyncio.Lock()
        self.cold_starts = 0
        self.on_cold_start: Callable[[str, float], None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._socket_dir: Path | None = None  # made on the first cold start, removed by aclose()

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _sockets(self) -> Path:
        """Runners listen on Unix sockets in a directory only this user can enter, so no other
        local user can reach a model without a key (TCP loopback is open to every user)."""
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="slipstream-runners-"))
        return self._socket_dir

    def spec_for(self, entry: ModelEntry) -> RunnerSpec:
        assert entry.gguf is not None
        return RunnerSpec(
            model_id=entry.id,
            gguf=resolve_gguf(entry.gguf),
            n_ctx=entry.context_length,
            parallel=entry.parallel,
            queue_size=entry.queue_size,
            threads=self._settings.threads,
            chat_template=entry.chat_template,
            kv_cache_type=entry.kv_cache_type,
            host_cache_mib=entry.host_cache_mib,
            socket_dir=self._sockets(),
        )

    async def acquire(self, entry: ModelEntry) -> Runner:
        """Return a live runner for the entry, cold-starting it if needed; pair with ``release``."""
        runner = self._runners.get(entry.id)
        if runner is None or not runner.alive:
            task = self._starting.get(entry.id)
            if task is None:
                self._backoff.check(entry.id)
                task = asyncio.get_running_loop().create_task(self._start(entry))
                self._starting[entry.id] = task
                task.add_done_callback(functools.partial(self._start_finished, entry.id))
            runner = await asyncio.shield(task)
        return self._hold(runner)

    def acquire_loaded(self, entry: ModelEntry) -> Runner | None:
        """The entry's runner if it is up already (no cold start, no wait); pair with ``release``."""
        runner = self._runners.get(entry.id)
        if runner is None or not runner.alive:
            return None
        return self._hold(runner)

    def _hold(self, runner: Runner) -> Runner:
        runner.active += 1
        if runner.idle_timer is not None:
            runner.idle_timer.cancel()
            runner.idle_timer = None
        return runner

    def _start_finished(self, model_id: str, _task: asyncio.Task[Runner]) -> None:
        self._starting.pop(model_id, None)

    def release(self, runner: Runner) -> None:
        runner.active -= 1
        runner.last_used = time.monotonic()
        if runner.active > 0 or not runner.alive or runner.keep_alive < 0:
            return
        if runner.keep_alive == 0:
            self._spawn_task(self._unload(runner, reason="keep_alive 0"))
        else:
            runner.idle_timer = asyncio.get_running_loop().call_later(
                runner.keep_alive, lambda: self._spawn_task(self._unload(runner, reason="idle"))
            )

    async def _start(self, entry: ModelEntry) -> Runner:
        spec = self.spec_for(entry)
        async with self._lock:
            stale = self._runners.pop(entry.id, None)
            if stale is not None:
                await self._stop(stale)
            await self._make_room(spec)
            try:
                started = await self._spawn(spec, self._settings.start_timeout_s)
            except RunnerStartFailed as exc:
                failure = self._backoff.failed(entry.id, exc.message)
                wait = self._backoff.remaining(failure)
                log.error(
                    "runner for %s failed to start (%d in a row; next attempt in %.0fs): %s",
                    entry.id, failure.failures, wait, exc.message,
                )  # fmt: skip
                raise ModelUnavailable(exc.message, retry_after=retry_after(wait)) from exc
            self._backoff.succeeded(entry.id)
            session = new_session(unix_socket=started.socket)
            client = OpenAICompatClient(started.base_url + "/v1", session)
            runner = Runner(spec, entry.keep_alive, started, session, client)
            self._runners[entry.id] = runner
        self.cold_starts += 1
        if self.on_cold_start is not None:
            self.on_cold_start(entry.id, started.startup_s)
        log.info("runner for %s started (pid %d) in %.2fs", entry.id, runner.pid, started.startup_s)
        self._spawn_task(self._watch(entry.id, runner))
        return runner

    async def _make_room(self, spec: RunnerSpec) -> None:
        """Evict idle runners, least recently used first, until the new one fits."""
        budget = self._settings.memory_budget_bytes
        need = estimate_bytes(spec)

        def fits() -> bool:
            if len(self._runners) >= self._settings.max_loaded_models:
                return False
            return budget == 0 or sum(r.rss_bytes() for r in self._runners.values()) + need <= budget

        while not fits():
            idle = sorted((r for r in self._runners.values() if r.active == 0), key=lambda r: r.last_used)
            if not idle:
                raise ModelUnavailable(
                    "Every loaded model is busy and there is no room to load another; retry shortly.",
                    code="server_overloaded",
                    retry_after=5,
                )
            victim = idle[0]
            self._runners.pop(victim.spec.model_id, None)
            log.info("evicting runner for %s to make room for %s", victim.spec.model_id, spec.model_id)
            await self._stop(victim)

    async def _watch(self, model_id: str, runner: Runner) -> None:
        code = await runner.started.process.wait()
        if self._runners.get(model_id) is runner:
            del self._runners[model_id]
            log.warning("runner for %s (pid %d) %s", model_id, runner.pid, describe_exit(code))
            await runner.session.close()

    async def _unload(self, runner: Runner, *, reason: str) -> None:
        async with self._lock:
            if runner.active > 0 or self._runners.get(runner.spec.model_id) is not runner:
                return
            del self._runners[runner.spec.model_id]
        log.info("unloading runner for %s (%s)", runner.spec.model_id, reason)
        await self._stop(runner)

    async def _stop(self, runner: Runner) -> None:
        if runner.idle_timer is not None:
            runner.idle_timer.cancel()
        await stop_process(runner.started.process)
        await runner.session.close()

    async def status(self) -> list[dict[str, Any]]:
        """What ``slipstream models ps`` shows: one row per loaded runner (``state`` "loaded"),
        then one per model whose last start failed (``state`` "backoff", or "failed" once the
        wait is over and the next request will try again)."""
        rows = []
        now = time.monotonic()
        for model_id, runner in list(self._runners.items()):
            detail: dict[str, Any] = {}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with runner.session.get(
                    runner.base_url + "/status", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    detail = await resp.json()
            rows.append(
                {
                    "model": model_id,
                    "state": "loaded",
                    "pid": runner.pid,
                    "rss_bytes": runner.rss_bytes(),
                    "loaded_at": runner.loaded_at,
                    "idle_for_s": 0.0 if runner.active else round(now - runner.last_used, 3),
                    "keep_alive_s": runner.keep_alive,
                    "active": runner.active,
                    "queued": int(detail.get("queued", 0)),
                    "slots_in_use": int(detail.get("slots_in_use", 0)),
                    "admitted_requests": int(detail.get("admitted_requests", 0)),
                    "queue_wait_s_total": float(detail.get("queue_wait_s_total", 0.0)),
                    "lent_streams": int(detail.get("lent_streams", 0)),
                    "context_length": runner.spec.n_ctx,
                    "parallel": runner.spec.parallel,
                }
            )
        return rows + [row for row in self._backoff.rows() if row["model"] not in self._runners]

    def loaded(self) -> list[str]:
        return list(self._runners)

    async def aclose(self) -> None:
        for task in list(self._starting.values()):
            task.cancel()
        async with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        await asyncio.gather(*(self._stop(r) for r in runners), return_exceptions=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
