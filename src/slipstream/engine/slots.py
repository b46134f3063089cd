"""KV slots with prompt-cache bookkeeping, and the bounded FIFO in front of them.

Each slot is one llama.cpp sequence id / KV stream. It remembers the token ids whose KV it
holds, so a new prompt goes to the free slot sharing the longest prefix and only the rest
is prefilled.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from slipstream.engine.errors import overloaded
from slipstream.engine.jobs import Job


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # token ids whose KV this slot holds
    busy: bool = False
    last_used: float = 0.0


class SlotTable:
    """Engine-thread-only: which slot serves which sequence, and what each slot has cached."""

    def __init__(self, n: int) -> None:
        self.slots = [Slot(i) for i in range(n)]

    def take(self, prompt: list[int], n: int) -> tuple[list[Slot], int]:
        """Reserve ``n`` free slots for a prompt; the first has the longest cached prefix.

        Returns the slots and the length of that prefix. Ties and misses go to the least
        recently used slot, so other slots' caches survive longer.
        """
        free = [s for s in self.slots if not s.busy]
        if len(free) < n:
            raise RuntimeError("slot accounting error: fewer free slots than reserved")
        free.sort(key=lambda s: (-common_prefix(s.tokens, prompt), s.last_used))
        chosen = free[:n]
        first = chosen[0]
        hit = common_prefix(first.tokens, prompt)
        if hit == 0:
            # no prefix anywhere: keep warm caches by using the least recently used slots
            chosen = sorted(free, key=lambda s: s.last_used)[:n]
        for s in chosen:
            s.busy = True
            s.last_used = time.time()
        return chosen, hit

    def release(self, slot: Slot) -> None:
        slot.busy = False
        slot.last_used = time.time()

    @property
    def in_use(self) -> int:
        return sum(1 for s in self.slots if s.busy)


class Admission:
    """Thread-safe: reserves slots for jobs in FIFO order; a full queue is a 429.

    The HTTP thread calls ``submit`` and ``cancel``; the engine thread calls ``take_ready``
    and ``release``. ``cond`` wakes the engine thread when work arrives.
    """

    def __init__(self, slots: int, queue_size: int) -> None:
        self.cond = threading.Condition()
        self._free = slots
        self._queue_size = queue_size
        self._waiting: deque[Job] = deque()
        self._ready: list[Job] = []

    def submit(self, job: Job) -> None:
        with self.cond:
            if not self._waiting and self._free >= job.n:
                self._free -= job.n
                self._ready.append(job)
            elif len(self._waiting) < self._queue_size:
                self._waiting.append(job)
            else:
                raise overloaded()
            self.cond.notify()

    def cancel(self, job: Job) -> None:
        with self.cond:
            job.cancelled = True
            if job in self._waiting:
                self._waiting.remove(job)
            self.cond.notify()

    def release(self, n: int) -> None:
        with self.cond:
            self._free += n
            self._promote()

    def take_ready(self) -> list[Job]:
        with self.cond:
            self._promote()
            ready, self._ready = self._ready, []
            return ready

    def wait(self, timeout: float | None = None) -> None:
        """Block the engine thread until something is ready (or ``notify``)."""
        with self.cond:
            if not self._ready:
                self.cond.wait(timeout)

    def wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def drain(self) -> list[Job]:
        """Shutdown: every job not yet on a slot, in order."""
        with self.cond:
            jobs = [*self._ready, *self._waiting]
            self._ready, self._waiting = [], deque()
            return jobs

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def _promote(self) -> None:
        while self._waiting and self._free >= self._waiting[0].n:
            job = self._waiting.popleft()
            self._free -= job.n
            self._ready.append(job)
