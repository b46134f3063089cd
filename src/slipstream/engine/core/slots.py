"""KV slots with prompt-cache bookkeeping, and the bounded FIFO in front of them.

Each slot is one llama.cpp sequence id with its own KV stream, and remembers the token ids
whose KV it holds. A new prompt goes to a free slot where it loses no other prompt's cache:
an empty one, or one whose cache the prompt extends (the previous turn of this chat) or
contains (the same prompt again), the longest such prefix first. Failing that, the least
recently used slot is overwritten. If any slot, busy or free, shares a prefix at least
``COPY_MIN`` tokens longer than the chosen one, its KV stream is copied in first: a
whole-stream memcpy of 4 ms at 2k context and 11 ms at 8k for the default model, the price of
1-3 prefilled tokens here, so a shared system prompt is computed once, not once per slot.

Placement ignores where the busy slots are, because ``compaction_moves`` repairs that: with
per-slot KV streams one ``llama_decode`` computes the batch as a single graph only if its
sequence ids are consecutive (``split_equal`` with ``sequential``). A batch over slots
{0, 1, 2, 5} runs as two graphs and every step pays for both; measured with 8 streams on
2 cores, 36 ms per step as one graph and 48-52 ms as two. Moving a sequence to close the gap
costs one stream copy, which a single saved graph pays back within a step or two.

A move must not cost a cache, though: the hole it fills is often a chat between two turns, and
overwriting it made that chat's next turn prefill its whole history again (8 users x 4 turns on
8 slots: 1.70x llama-server's time to first token at the median, 0.66x with compaction off).
So when the hole holds tokens that no other slot also holds, the two slots swap through one spare
KV stream (three copies instead of one) and the chat's cache moves out to the slot the busy
sequence left.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from slipstream.engine.core.jobs import Job
from slipstream.engine.errors import overloaded


def common_prefix(a: list[int], b: list[int]) -> int:
    """Compared a slice at a time in C, then token by token inside the chunk that differs: placement
    and the host cache compare every prompt with every cache, a thousand tokens each."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i, chunk = 0, 256
    while i + chunk <= n and a[i : i + chunk] == b[i : i + chunk]:
        i += chunk
    while a[i] == b[i]:  # some token before n differs
        i += 1
    return i


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # token ids whose KV this slot holds
    busy: bool = False
    last_used: float = 0.0


COPY_MIN = 16  # tokens of extra prefix that make copying another slot's KV stream worth it


@dataclass(frozen=True)
class Move:
    """A busy sequence moves from slot ``src`` to the hole ``dst``; with ``swap``, the cache
    ``dst`` held moves to ``src`` in exchange (see the module docstring)."""

    src: int
    dst: int
    swap: bool


def runs(ids: set[int]) -> int:
    """How many graphs a decode over these sequence ids takes: the count of consecutive runs."""
    return sum(1 for i in ids if i - 1 not in ids)


@dataclass(frozen=True)
class Placement:
    slots: list[Slot]  # the first holds (or receives) the prompt's KV; the rest are n > 1 siblings
    cached: int  # prompt tokens whose KV the first slot will hold
    copy_from: int | None  # seq id whose KV stream to copy into the first slot first, if any


class SlotTable:
    """Engine-thread-only: which slot serves which sequence, and what each slot has cached."""

    def __init__(self, n: int) -> None:
        self.slots = [Slot(i) for i in range(n)]

    def take(self, prompt: list[int], n: int) -> Placement:
        """Reserve ``n`` free slots for a prompt (see the module docstring for the order)."""
        free = [s for s in self.slots if not s.busy]
        if len(free) < n:
            raise RuntimeError("slot accounting error: fewer free slots than reserved")
        busy = {s.seq_id for s in self.slots if s.busy}
        hits = [common_prefix(s.tokens, prompt) for s in self.slots]

        def rank(s: Slot) -> tuple[bool, int, int, float]:
            hit = hits[s.seq_id]
            loses_cache = hit < len(s.tokens) and hit < len(prompt)
            return loses_cache, 0 if loses_cache else -hit, runs(busy | {s.seq_id}), s.last_used

        first = min(free, key=rank)
        chosen = [first]
        busy.add(first.seq_id)
        for _ in range(n - 1):  # n > 1 siblings receive the first one's KV later
            nxt = min((s for s in free if s.seq_id not in busy), key=lambda s: (runs(busy | {s.seq_id}), s.last_used))
            chosen.append(nxt)
            busy.add(nxt.seq_id)
        now = time.time()
        for s in chosen:
            s.busy = True
            s.last_used = now
        source = max(range(len(self.slots)), key=lambda i: hits[i])
        if hits[source] >= hits[first.seq_id] + COPY_MIN:
            return Placement(chosen, hits[source], source)
        return Placement(chosen, hits[first.seq_id], None)

    def compaction_moves(self) -> list[Move]:
        """Moves that make the busy slots one consecutive run, fewest first.

        The window of ``len(busy)`` slots that already holds the most busy ones stays (of equal
        ones, the one with the fewest caches worth keeping in its holes); each busy slot outside
        it moves into a hole inside it.
        """
        busy = [s.seq_id for s in self.slots if s.busy]
        if runs(set(busy)) <= 1:
            return []
        k = len(busy)
        keep = [self.worth_keeping(s.seq_id) and not s.busy for s in self.slots]

        def score(a: int) -> tuple[int, int, int]:
            inside = range(a, a + k)
            return sum(i in inside for i in busy), -sum(keep[i] for i in inside), -a

        start = max(range(len(self.slots) - k + 1), key=score)
        holes = [i for i in range(start, start + k) if not self.slots[i].busy]
        strays = [i for i in busy if not start <= i < start + k]
        return [Move(src, dst, keep[dst]) for src, dst in zip(strays, holes, strict=True)]

    def worth_keeping(self, seq_id: int) -> bool:
        """Whether this slot holds at least ``COPY_MIN`` tokens that no other slot holds too."""
        tokens = self.slots[seq_id].tokens
        shared = max((common_prefix(tokens, s.tokens) for s in self.slots if s.seq_id != seq_id), default=0)
        return len(tokens) - shared >= COPY_MIN

    def move(self, move: Move) -> None:
        """Record a move: ``src`` keeps its KV as a free cache, or with ``swap`` gets ``dst``'s."""
        old, new = self.slots[move.src], self.slots[move.dst]
        if move.swap:
            old.tokens, new.tokens = new.tokens, old.tokens
            old.last_used = new.last_used
        else:
            new.tokens = list(old.tokens)
        new.busy, new.last_used = True, time.time()
        old.busy = False

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
