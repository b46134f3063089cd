"""The batching core's scheduling on chat traffic, driven one loop turn at a time.

The model here simulates KV streams: each sequence id's KV is the list of tokens fed to it, a
decode appends at the positions the batch names (and fails the test if a position skips or
repeats), ``seq_copy`` copies a whole stream and ``seq_clear`` truncates one. After every turn
each slot's bookkeeping must equal its stream exactly, which is what makes ``cached_tokens``
(billed at the cached price) the truth. No threads and no clocks: what is asserted is counted in
steps, so a noisy machine cannot make these tests pass or fail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slipstream.engine.core.batching import Engine
from slipstream.engine.core.jobs import Event, Job, JobDone, JobFailed
from slipstream.engine.core.slots import runs
from slipstream.engine.core.step_trace import StepTrace


class KVModel:
    def __init__(self, parallel: int, batch_size: int = 128) -> None:
        self.config = SimpleNamespace(batch_size=batch_size)
        self.spare_seq = parallel
        self.kv: dict[int, list[int]] = {i: [] for i in range(parallel + 1)}
        self.batches: list[set[int]] = []  # the sequence ids of each decode
        self.saves = 0
        self.fail_restores = False

    def decode(self, batch: Any) -> int:
        ids = set()
        for i in range(batch.n):
            seq, pos = int(batch.seq_ids[i]), int(batch.pos[i])
            assert len(self.kv[seq]) == pos, f"sequence {seq} fed at position {pos} with {len(self.kv[seq])} cells"
            self.kv[seq].append(int(batch.tokens[i]))
            ids.add(seq)
        self.batches.append(ids)
        return 0

    def seq_clear(self, seq_id: int, start: int = 0) -> None:
        del self.kv[seq_id][start:]

    def seq_copy(self, src: int, dst: int) -> None:
        self.kv[dst] = list(self.kv[src])

    def seq_save(self, seq_id: int) -> tuple[list[int], int]:
        self.saves += 1
        return list(self.kv[seq_id]), 100 * len(self.kv[seq_id])

    def seq_restore(self, data: list[int], size: int, seq_id: int) -> bool:
        assert size == 100 * len(data)
        if self.fail_restores:  # as llama.cpp does on failure: the sequence is left empty
            self.kv[seq_id] = []
            return False
        self.kv[seq_id] = list(data)
        return True

    def is_eog(self, token: int) -> bool:
        return token == 0

    def piece(self, token: int) -> bytes:
        return b"x"


class ScriptedSampler:
    def __init__(self, tokens: list[int]) -> None:
        self.tokens = list(tokens)

    def sample(self, model: Any, idx: int) -> int:
        return self.tokens.pop(0)

    def free(self) -> None:
        return None


class Driver:
    """An engine whose loop the test turns by hand, checking the KV bookkeeping after each turn."""

    def __init__(
        self, parallel: int, prefill_chunk: int = 16, trace: StepTrace | None = None, host_cache_bytes: int = 0
    ) -> None:
        self.model = KVModel(parallel)
        self.ended: dict[Job, Event] = {}
        self.engine = Engine(
            self.model,  # type: ignore[arg-type]
            parallel=parallel,
            queue_size=64,
            deliver=self._deliver,
            prefill_chunk=prefill_chunk,
            trace=trace,
            host_cache_bytes=host_cache_bytes,
        )

    def _deliver(self, items: list[tuple[Job, list[Event]]]) -> None:
        for job, events in items:
            for ev in events:
                if isinstance(ev, JobDone | JobFailed):
                    self.ended[job] = ev

    def submit(self, prompt: list[int], reply: list[int]) -> Job:
        job = Job(prompt, 1, max_tokens=len(reply), top_logprobs=None, samplers=[ScriptedSampler(reply)], stops=())  # type: ignore[list-item]
        self.engine.submit(job)
        return job

    def turn(self) -> None:
        self.engine._tick()
        for slot in self.engine.slots.slots:
            assert slot.tokens == self.model.kv[slot.seq_id], f"slot {slot.seq_id}'s bookkeeping lies"

    def finish(self, jobs: list[Job], limit: int = 10_000) -> None:
        for _ in range(limit):
            if all(j in self.ended for j in jobs):
                return
            self.turn()
        raise AssertionError("the jobs never ended")


def tokens(base: int, n: int) -> list[int]:
    return list(range(base, base + n))


def test_compaction_keeps_the_cache_of_a_chat_between_turns(tmp_path: Path) -> None:
    trace = StepTrace(tmp_path / "steps.jsonl")
    d = Driver(parallel=4, trace=trace)
    first = {u: tokens(100 * (u + 1), 20) for u in range(4)}
    jobs = {u: d.submit(first[u], [7 + u] * 3) for u in range(4)}
    d.finish(list(jobs.values()))
    home = {u: next(s.seq_id for s in d.engine.slots.slots if s.tokens[:20] == first[u]) for u in range(4)}
    by_slot = {slot: u for u, slot in home.items()}
    # two chats whose slots are not adjacent go on; compaction must not overwrite the chat between them
    going_on = [by_slot[0], by_slot[2]]
    second = [d.submit(first[u] + [7 + u] * 3 + tokens(5000 + u * 10, 5), [9] * 6) for u in going_on]
    d.finish(second)
    assert all(runs(ids) == 1 for ids in d.model.batches[-6:]), "busy slots not compacted into one graph"
    trace.close()
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == d.engine.steps and all(s["graphs"] == 1 for s in steps[-6:])
    assert sum(s["copies"] for s in steps) == 3, "one swap through the spare stream: three stream copies"
    for u in (by_slot[1], by_slot[3]):
        history = first[u] + [7 + u] * 3
        again = d.submit(history + tokens(6000 + u * 10, 5), [9] * 2)
        d.finish([again])
        assert again.cached_tokens == len(first[u]) + 2, f"chat {u} lost its cache (the last reply token is never fed)"


def test_many_chats_on_few_slots_all_finish_whole_reuse_the_system_prompt_and_wait_fairly() -> None:
    parallel, users, turns, reply_len, chunk = 4, 10, 3, 5, 16
    d = Driver(parallel=parallel, prefill_chunk=chunk)
    system = tokens(10_000, 40)
    history = {u: list(system) for u in range(users)}
    current: dict[int, Job] = {}
    done: list[Job] = []
    turn_of = dict.fromkeys(range(users), 0)
    for tick in range(20_000):
        for u in range(users):
            if u in current and current[u] in d.ended:
                job = current.pop(u)
                done.append(job)
                history[u] += [20_000 + 100 * u + turn_of[u]] * reply_len
            if u not in current and turn_of[u] < turns and tick >= 2 * u:  # users arrive a little apart
                turn_of[u] += 1
                history[u] += tokens(30_000 + 1000 * u + 10 * turn_of[u], 6)
                current[u] = d.submit(list(history[u]), [20_000 + 100 * u + turn_of[u]] * reply_len)
        if not current and all(t == turns for t in turn_of.values()):
            break
        d.turn()
    assert len(done) == users * turns
    for job in done:
        end = d.ended[job]
        assert isinstance(end, JobDone) and end.completion_tokens == reply_len
        assert end.prompt_tokens == len(job.prompt)
    assert done[0].cached_tokens == 0
    assert all(j.cached_tokens >= len(system) for j in done[1:]), "the shared system prompt was computed again"
    # a job waits for at most one slot's worth of other work per round of users beyond the slots, plus its own prefill
    longest_prompt = max(len(j.prompt) for j in done)
    holding = math.ceil(longest_prompt / chunk) + reply_len
    bound = math.ceil((users - parallel) / parallel) * holding + math.ceil(longest_prompt / chunk) + 1
    waits = [j.wait_steps for j in done]
    assert all(w is not None and w <= bound for w in waits), (bound, waits)


def test_chats_pushed_out_of_the_slots_come_back_from_host_memory() -> None:
    d = Driver(parallel=2, host_cache_bytes=100 * 40 * 4)  # room for four 40-token conversations
    system = tokens(10_000, 24)
    first = {u: [*system, *tokens(1000 * (u + 1), 16)] for u in range(5)}
    for u in range(5):  # one after another: each pushes an older chat out of the two slots
        job = d.submit(first[u], [50 + u] * 3)
        d.finish([job])
    host = d.engine.host_cache
    assert host is not None and len(host) == 3 and host.saved == 3
    assert d.model.saves == 3, "a slot holding only what another slot holds is not saved"
    for u in range(3):  # the three chats that left the slots
        again = d.submit([*first[u], 50 + u, 50 + u, 50 + u, *tokens(7000 + u, 4)], [9] * 2)
        d.finish([again])
        assert again.cached_tokens == len(first[u]) + 2, f"chat {u}'s history was prefilled again"
    assert host.restored == 3


def test_a_failed_restore_prefills_from_scratch_and_bills_nothing_as_cached() -> None:
    d = Driver(parallel=1, host_cache_bytes=100_000)
    a, b = tokens(100, 40), tokens(200, 40)
    for prompt in (a, b):  # b pushes a out of the only slot, into host memory
        d.finish([d.submit(prompt, [5, 5])])
    d.model.fail_restores = True
    again = d.submit([*a, 5, 6], [9, 9])
    d.finish([again])  # the driver checks that the slot's bookkeeping matches its KV after every turn
    assert again.cached_tokens == 0 and isinstance(d.ended[again], JobDone)


def test_the_host_cache_keeps_the_newest_within_its_budget_and_no_duplicates() -> None:
    from slipstream.engine.core.host_cache import HostCache

    host = HostCache(budget_bytes=250)
    host.put([1, 2, 3], "a", 100)
    host.put([1, 2, 3, 4, 5], "b", 100)  # extends the first: replaces it
    assert len(host) == 1 and host.bytes == 100 and host.covers([1, 2, 3]) and not host.covers([1, 2, 9])
    host.put([7, 8], "c", 100)
    host.put([9], "d", 100)  # over budget: the oldest ([1..5]) goes
    assert len(host) == 2 and host.bytes == 200 and host.best([1, 2, 3, 4, 5, 6]) == (None, 0)
    entry, hit = host.best([7, 8, 1])
    assert entry is not None and entry.data == "c" and hit == 2
    host.take(entry)
    assert len(host) == 1 and host.bytes == 100
    host.put([5] * 10, "too big", 300)
    assert len(host) == 1, "an entry larger than the whole budget is not kept"
