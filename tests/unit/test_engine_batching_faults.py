"""A fault in the engine thread fails the requests it touched, never the thread itself; and if the
thread dies anyway, the runner process exits non-zero so the supervisor restarts it.

The batching core runs in-process on a fake model (no llama.cpp context), with faults injected
by monkeypatching its collaborators.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from slipstream.engine.core.batching import ENGINE_DIED_EXIT, Engine
from slipstream.engine.core.jobs import ChoiceDelta, Event, Job, JobDone, JobFailed

ROOT = Path(__file__).resolve().parents[2]


class FakeModel:
    """The few calls the batching core makes; every token renders as "x", token 0 ends a sequence."""

    config = SimpleNamespace(batch_size=16)

    def __init__(self) -> None:
        self.fail_decodes = 0

    def decode(self, batch: Any) -> int:
        if self.fail_decodes:
            self.fail_decodes -= 1
            raise RuntimeError("injected fault in a decode step")
        return 0

    def seq_clear(self, seq_id: int, start: int = 0) -> None:
        return None

    def seq_copy(self, src: int, dst: int) -> None:
        return None

    def is_eog(self, token: int) -> bool:
        return token == 0

    def piece(self, token: int) -> bytes:
        return b"x"


class FakeSampler:
    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def sample(self, model: Any, idx: int) -> int:
        return self.tokens.pop(0) if self.tokens else 0

    def free(self) -> None:
        return None


def job(tokens: int = 3) -> Job:
    return Job([1, 2, 3], 1, max_tokens=tokens, top_logprobs=None, samplers=[FakeSampler([5] * tokens)], stops=())  # type: ignore[list-item]


class Harness:
    def __init__(self) -> None:
        self.model = FakeModel()
        self.events: queue.Queue[tuple[Job, Event]] = queue.Queue()
        self.poisoned: set[int] = set()  # ids of jobs whose deltas cannot be rendered
        self.deaths: list[BaseException] = []
        self.engine = Engine(
            self.model,  # type: ignore[arg-type]
            parallel=2,
            queue_size=4,
            deliver=self.deliver,
            on_death=self.deaths.append,
        )

    def deliver(self, items: list[tuple[Job, list[Event]]]) -> None:
        for j, events in items:
            if id(j) in self.poisoned and any(isinstance(ev, ChoiceDelta) for ev in events):
                raise ValueError("injected fault rendering a chunk")
        for j, events in items:
            for ev in events:
                self.events.put((j, ev))

    def outcome(self, j: Job, timeout: float = 10.0) -> Event:
        """The job's terminal event (JobDone or JobFailed)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                owner, ev = self.events.get(timeout=left)
            except queue.Empty:
                break
            if owner is j and isinstance(ev, JobDone | JobFailed):
                return ev
        raise AssertionError("the job never ended")


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    h.engine.start()
    yield h
    h.engine.stop()


def test_a_delivery_fault_fails_that_request_and_the_engine_keeps_serving(harness: Harness) -> None:
    bad = job(50)
    harness.poisoned.add(id(bad))
    harness.engine.submit(bad)
    failed = harness.outcome(bad)
    assert isinstance(failed, JobFailed) and "internal error" in failed.message
    assert harness.engine._thread.is_alive() and not harness.deaths
    assert harness.engine.slots_in_use == 0 and harness.engine.active_jobs == 0
    good = job(3)
    harness.engine.submit(good)
    done = harness.outcome(good)
    assert isinstance(done, JobDone) and done.completion_tokens == 3


def test_a_step_fault_fails_the_running_requests_and_the_engine_keeps_serving(harness: Harness) -> None:
    harness.model.fail_decodes = 1
    first = job(3)
    harness.engine.submit(first)
    assert isinstance(harness.outcome(first), JobFailed)
    second = job(3)
    harness.engine.submit(second)
    assert isinstance(harness.outcome(second), JobDone)
    assert harness.engine._thread.is_alive() and not harness.deaths


def test_an_engine_thread_that_dies_anyway_reports_its_death(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(message: str) -> None:
        raise RuntimeError("injected fault while failing the requests")

    monkeypatch.setattr(harness.engine, "_fail_all", broken)
    harness.model.fail_decodes = 1
    harness.engine.submit(job(3))
    harness.engine._thread.join(timeout=10)
    assert not harness.engine._thread.is_alive()
    assert [str(e) for e in harness.deaths] == ["injected fault while failing the requests"]


_DYING_RUNNER = """
import time
from tests.unit.test_engine_batching_faults import FakeModel, job
from slipstream.engine.core.batching import Engine

model = FakeModel()
engine = Engine(model, parallel=2, queue_size=4, deliver=lambda items: None)
def broken(message):
    raise RuntimeError("injected")
engine._fail_all = broken
model.fail_decodes = 1
engine.start()
engine.submit(job(3))
time.sleep(30)
print("still alive")
"""


def test_by_default_a_dead_engine_thread_ends_the_process_non_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _DYING_RUNNER], cwd=ROOT, capture_output=True, text=True, timeout=25, check=False
    )
    assert proc.returncode == ENGINE_DIED_EXIT, proc.stderr[-2000:]
    assert "still alive" not in proc.stdout
    assert "the engine thread died" in proc.stderr
