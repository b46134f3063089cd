"""Back-off after failed runner starts, with a spawn factory that fails on demand and a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slipstream.config import EngineSettings
from slipstream.errors import ModelUnavailable
from slipstream.runners.backoff import StartBackoff
from slipstream.runners.process import RunnerSpec, RunnerStartFailed, StartedRunner
from slipstream.runners.supervisor import Supervisor
from tests.unit.test_supervisor import entry, slow_fake_spawn

CAUSE = "The local engine crashed with SIGSEGV (signal 11) while loading m; run `slipstream doctor` to check."


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakySpawn:
    """Fails while ``failing`` is set (after ``delay`` seconds, like a runner dying mid-load); counts calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.failing = True
        self.delay = delay
        self._real = slow_fake_spawn(0)

    async def __call__(self, spec: RunnerSpec, timeout_s: float) -> StartedRunner:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.failing:
            raise RunnerStartFailed(CAUSE.replace(" m;", f" {spec.model_id};"))
        return await self._real(spec, timeout_s)


def make(clock: Clock, spawn: FlakySpawn) -> Supervisor:
    return Supervisor(EngineSettings(), spawn=spawn, backoff=StartBackoff(clock=clock, wall=lambda: 5.0))


async def failure(supervisor: Supervisor, e: object) -> ModelUnavailable:
    with pytest.raises(ModelUnavailable) as info:
        await supervisor.acquire(e)  # type: ignore[arg-type]
    return info.value


async def test_a_failed_start_is_a_503_with_the_cause_and_no_respawn_while_backing_off(tmp_path: Path) -> None:
    clock, spawn = Clock(), FlakySpawn()
    supervisor = make(clock, spawn)
    e = entry(tmp_path, "m")
    try:
        first = await failure(supervisor, e)
        assert (first.message, first.code, first.retry_after) == (CAUSE, "model_unavailable", 2)
        clock.now += 0.5
        second = await failure(supervisor, e)
        assert second.message == CAUSE + " Not retrying for 2s (1 failed start in a row)."
        assert (second.code, second.retry_after, spawn.calls) == ("model_unavailable", 2, 1)
        assert await supervisor.status() == [
            {"model": "m", "state": "backoff", "cause": CAUSE, "failures": 1, "retry_in_s": 1.5, "failed_at": 5.0}
        ]
        assert supervisor.loaded() == [] and supervisor.cold_starts == 0
    finally:
        await supervisor.aclose()


async def test_back_off_doubles_to_a_minute_and_resets_after_a_successful_start(tmp_path: Path) -> None:
    clock, spawn = Clock(), FlakySpawn()
    supervisor = make(clock, spawn)
    e = entry(tmp_path, "m")
    try:
        waits: list[int] = []
        for _ in range(7):
            wait = (await failure(supervisor, e)).retry_after
            assert wait is not None
            waits.append(wait)
            clock.now += wait - 0.5
            assert (await failure(supervisor, e)).retry_after == 1  # still waiting: no spawn
            clock.now += 0.5
        assert waits == [2, 4, 8, 16, 32, 60, 60]
        assert spawn.calls == 7
        (row,) = await supervisor.status()
        assert (row["state"], row["failures"], row["retry_in_s"]) == ("failed", 7, 0.0)
        spawn.failing = False
        runner = await supervisor.acquire(e)
        supervisor.release(runner)
        (row,) = await supervisor.status()
        assert (row["state"], row["model"], row["pid"]) == ("loaded", "m", runner.pid)
    finally:
        await supervisor.aclose()


async def test_a_success_forgets_earlier_failures(tmp_path: Path) -> None:
    clock, spawn = Clock(), FlakySpawn()
    supervisor = make(clock, spawn)
    e = entry(tmp_path, "m")
    try:
        assert (await failure(supervisor, e)).retry_after == 2
        clock.now += 2
        assert (await failure(supervisor, e)).retry_after == 4
        clock.now += 4
        spawn.failing = False
        runner = await supervisor.acquire(e)
        supervisor.release(runner)
        runner.started.process.kill()
        await runner.started.process.wait()
        await asyncio.sleep(0.05)
        spawn.failing = True
        assert (await failure(supervisor, e)).retry_after == 2  # counting starts again
        assert spawn.calls == 4
    finally:
        await supervisor.aclose()


async def test_requests_waiting_on_one_failing_start_share_it_and_other_models_are_unaffected(
    tmp_path: Path,
) -> None:
    clock, spawn = Clock(), FlakySpawn(delay=0.2)
    supervisor = make(clock, spawn)
    bad, good = entry(tmp_path, "bad"), entry(tmp_path, "good")
    try:
        results = await asyncio.gather(*(supervisor.acquire(bad) for _ in range(3)), return_exceptions=True)
        assert [type(r) for r in results] == [ModelUnavailable] * 3
        assert {r.retry_after for r in results if isinstance(r, ModelUnavailable)} == {2}
        assert spawn.calls == 1
        spawn.failing = False
        runner = await supervisor.acquire(good)
        supervisor.release(runner)
        rows = await supervisor.status()
        assert [(r["model"], r["state"]) for r in rows] == [("good", "loaded"), ("bad", "backoff")]
    finally:
        await supervisor.aclose()
