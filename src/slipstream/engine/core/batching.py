"""Continuous batching: one thread owns the llama context and runs the decode loop.

Every step packs one token for each generating sequence plus prompt chunks of newly admitted
sequences into one ``llama_decode`` call. While other sequences are generating, prompts get at
most ``prefill_chunk`` tokens per step, so a long prompt joining never stalls running streams
for more than one short chunk; with nothing generating, a step takes up to ``batch_size``. After the step each
sequence that produced logits samples its next token through its own C sampler chain.
Events for the HTTP loop are handed over once per step.

A failure in a step, or in handing its events over (``deliver`` also renders and writes direct
streams), fails the requests it touched and the thread carries on. If the thread dies anyway,
the runner exits with ``ENGINE_DIED_EXIT`` rather than stay up as a server whose requests no
thread will ever run, so the supervisor sees it and starts a new one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from slipstream.engine.core.host_cache import HostCache
from slipstream.engine.core.jobs import ChoiceDelta, Event, Job, JobDone, JobFailed, SeqState, Sequence
from slipstream.engine.core.kv_moves import KVMoves
from slipstream.engine.core.llama_backend import LlamaModel, TokenBatch
from slipstream.engine.core.sampling import logprobs_at
from slipstream.engine.core.slots import Admission, SlotTable, runs
from slipstream.engine.core.step_trace import StepTrace

log = logging.getLogger("slipstream.engine")

Deliver = Callable[[list[tuple[Job, list[Event]]]], None]
T = TypeVar("T")
ENGINE_DIED_EXIT = 4  # the runner's exit status when its engine thread died
RECENT_WAITS = 1024  # jobs whose first-token wait /status summarises


def exit_runner(exc: BaseException) -> None:
    """The default ``on_death``: end the whole process at once (no clean-up can be trusted now)."""
    os._exit(ENGINE_DIED_EXIT)


class Engine:
    def __init__(
        self,
        model: LlamaModel,
        *,
        parallel: int,
        queue_size: int,
        deliver: Deliver,
        prefill_chunk: int = 64,
        on_death: Callable[[BaseException], None] = exit_runner,
        trace: StepTrace | None = None,
        host_cache_bytes: int = 0,
    ) -> None:
        self.model = model
        self._trace = trace
        self._on_death = on_death
        self.prefill_chunk = prefill_chunk
        self.admission = Admission(parallel, queue_size)
        self.slots = SlotTable(parallel)
        self.kv = KVMoves(model, self.slots, host_cache_bytes)
        self._batch = TokenBatch(model.config.batch_size)
        self._deliver = deliver
        self._active: list[Sequence] = []  # on a slot, in slot order
        self._outbox: dict[Job, list[Event]] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="slipstream-engine", daemon=True)
        self._first: Callable[[], object] | None = None
        self._started: Future[Any] = Future()
        self.steps = 0  # decode steps run
        self.first_token_waits: deque[int] = deque(maxlen=RECENT_WAITS)  # recent jobs' wait_steps
        self.tokens_generated = 0
        self.admitted_jobs = 0
        self.queue_wait_s = 0.0  # summed over admitted jobs: submit → slot
        self.active_jobs = 0
        self.loaded_at = time.time()
        self.last_active_at = self.loaded_at

    # --- called from the HTTP thread ----------------------------------------------------

    def start(self, first: Callable[[], T] | None = None) -> Future[T | None]:
        """Start the engine thread; ``first`` (the self-check) runs on it before the loop.

        llama.cpp's compute threads belong to the thread that calls it: a first decode on any
        other thread left every later step of this one about 40 % slower (measured: 104 → 55
        tok/s at one stream). So the thread that will serve is the one that proves the engine.
        The future holds ``first``'s result, or its exception (the loop then never starts).
        """
        started: Future[T | None] = Future()
        self._first, self._started = first, started
        self._thread.start()
        return started

    def submit(self, job: Job) -> None:
        """Queue a job or raise the 429 ``RateLimited`` when slots and queue are full."""
        job.submitted_step = self.steps
        self.admission.submit(job)

    def cancel(self, job: Job) -> None:
        """The client went away: the sequence leaves the batch at the next step."""
        self.admission.cancel(job)

    def stop(self) -> None:
        self._stop = True
        self.admission.wake()
        self._thread.join(timeout=10)

    def run_inline(self, job: Job) -> list[Event]:
        """As ``start``'s ``first``: run one job to its end before the loop, through the same
        admission, prefill, decode and sampling code as every request, and return its events."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("run_inline runs on the engine thread, before its loop")
        self.submit(job)
        for ready in self.admission.take_ready():
            self._admit(ready)
        while self._active:
            self._step()
        return self._outbox.pop(job, [])

    def forget(self) -> None:
        """After ``run_inline``: drop every slot's KV and cached tokens and zero the counters, as if
        nothing had run (so the self-check neither seeds the prompt cache nor shows in /status)."""
        for slot in self.slots.slots:
            self.model.seq_clear(slot.seq_id)
            slot.tokens.clear()
            slot.last_used = 0.0
        self._outbox.clear()
        if self.host_cache is not None:
            self.host_cache.clear()
        self.tokens_generated = self.admitted_jobs = self.active_jobs = self.steps = 0
        self.first_token_waits.clear()
        self.queue_wait_s = 0.0
        self.last_active_at = self.loaded_at

    @property
    def host_cache(self) -> HostCache | None:
        return self.kv.host_cache

    @property
    def queued(self) -> int:
        return self.admission.queued

    @property
    def slots_in_use(self) -> int:
        return self.slots.in_use

    # --- engine thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            result = self._first() if self._first is not None else None
        except BaseException as exc:  # noqa: BLE001 - handed to the runner, which reports it and exits
            self._started.set_exception(exc)
            return
        self._started.set_result(result)
        try:
            self._loop()
        except BaseException as exc:
            log.critical("the engine thread died; ending the runner so that it is restarted", exc_info=True)
            self._on_death(exc)

    def _loop(self) -> None:
        while not self._stop:
            self._tick()
        self._fail_all("the model runner is shutting down")
        if self._trace is not None:
            self._trace.close()
        for job in self.admission.drain():
            self._discard(job)
            self._outbox.setdefault(job, []).append(JobFailed("the model runner is shutting down"))
        self._flush()

    def _tick(self) -> None:
        """One turn of the loop: admit, reap, compact, one decode step, hand its events over."""
        try:
            for job in self.admission.take_ready():
                self._admit(job)
            self._reap_cancelled()
            self._compact()
            if not self._active:
                self.admission.wait(timeout=1.0)
                return
            self._step()
        except Exception:
            log.exception("engine step failed; failing the active requests")
            self._fail_all("internal error in the inference engine")
        self._flush()

    def _admit(self, job: Job) -> None:
        try:
            self._start_job(job)
        except Exception:
            log.exception("could not start a request")
            if job in {s.job for s in self._active}:
                self._fail_job(job, "internal error starting the request")
            else:
                self._free_job(job)
                self._outbox.setdefault(job, []).append(JobFailed("internal error starting the request"))

    def _start_job(self, job: Job) -> None:
        if job.cancelled:
            self._free_job(job)
            return
        slots, keep = self.kv.place(job.prompt, job.n)
        first = job.seqs[0]
        for seq, slot in zip(job.seqs, slots, strict=True):
            seq.slot = slot.seq_id
        first.n_past = keep
        first.state = SeqState.PREFILL
        for seq in job.seqs[1:]:
            seq.state = SeqState.FOLLOW
        job.cached_tokens = keep
        self.admitted_jobs += 1
        self.queue_wait_s += time.monotonic() - job.submitted_at
        self._active.extend(job.seqs)
        self._active.sort(key=lambda s: s.slot)  # batch order = seq id order: one graph per step (see slots.py)
        self.active_jobs += 1
        self.last_active_at = time.time()

    def _reap_cancelled(self) -> None:
        for seq in [s for s in self._active if s.job.cancelled]:
            # the client is gone: forget this slot's KV (its tokens stay counted)
            self.model.seq_clear(seq.slot)
            self.slots.slots[seq.slot].tokens.clear()
            self._end(seq, notify=False)

    def _compact(self) -> None:
        if self.kv.compact(self._active):
            self._active.sort(key=lambda s: s.slot)

    def _step(self) -> None:
        batch = self._batch
        batch.clear()
        n_decoding = sum(1 for s in self._active if s.state is SeqState.DECODE)
        room = batch.capacity - n_decoding
        budget = room if not n_decoding else min(room, self.prefill_chunk)
        chunk_len: dict[Sequence, int] = {}  # prompt budget goes to the oldest requests first
        for seq in sorted((s for s in self._active if s.state is SeqState.PREFILL), key=lambda s: s.job.submitted_at):
            if budget == 0:
                break
            chunk_len[seq] = n = min(budget, len(seq.job.prompt) - seq.n_past)
            budget -= n
        decoding: list[tuple[Sequence, int]] = []
        prefilling: list[tuple[Sequence, int, int]] = []  # seq, chunk length, logits index or -1
        for seq in self._active:  # in slot order, so the batch decodes as one graph (see slots.py)
            if seq.state is SeqState.DECODE:
                decoding.append((seq, batch.add(seq.next_token, seq.n_past, seq.slot)))
            elif seq in chunk_len:
                prompt, n = seq.job.prompt, chunk_len[seq]
                last = seq.n_past + n == len(prompt)
                idx = batch.add_run(prompt[seq.n_past : seq.n_past + n], seq.n_past, seq.slot, last)
                prefilling.append((seq, n, idx if last else -1))
        if batch.n == 0:
            return
        began = time.monotonic()
        rc = self.model.decode(batch)
        self.steps += 1
        if self._trace is not None:
            counts = {
                "decode": len(decoding), "prefill_tokens": sum(n for _, n, _ in prefilling),
                "prefill_seqs": len(prefilling), "copies": self.kv.copies,
                "graphs": runs({s.slot for s, _ in decoding} | {s.slot for s, _, _ in prefilling}),
            }  # fmt: skip
            self._trace.record(began, time.monotonic() - began, counts)
        self.kv.decoded(rc == 0)
        if rc != 0:
            log.error("llama_decode returned %d for a batch of %d tokens", rc, batch.n)
            for seq in {s for s, _ in decoding} | {s for s, _, _ in prefilling}:
                self._fail_job(seq.job, f"llama_decode failed (code {rc})")
            return
        self.last_active_at = time.time()
        for seq, idx in decoding:
            self.slots.slots[seq.slot].tokens.append(seq.next_token)
            seq.n_past += 1
            self._sample(seq, idx)
        for seq, n, idx in prefilling:
            prompt = seq.job.prompt
            self.slots.slots[seq.slot].tokens.extend(prompt[seq.n_past : seq.n_past + n])
            seq.n_past += n
            if idx >= 0:
                seq.state = SeqState.DECODE
                self._sample(seq, idx)
                self._start_followers(seq, idx)

    def _start_followers(self, first: Sequence, idx: int) -> None:
        """n > 1: copy the first choice's prompt KV to the siblings and draw from the same logits."""
        tokens = first.job.prompt
        for seq in first.job.seqs[1:]:
            if seq.state is not SeqState.FOLLOW:
                continue
            self.kv.copy(first.slot, seq.slot)
            self.slots.slots[seq.slot].tokens[:] = tokens
            seq.n_past = first.n_past
            seq.state = SeqState.DECODE
            self._sample(seq, idx)

    def _sample(self, seq: Sequence, idx: int) -> None:
        job = seq.job
        assert seq.sampler is not None
        token = seq.sampler.sample(self.model, idx)
        seq.generated += 1
        self.tokens_generated += 1
        if job.wait_steps is None:
            job.wait_steps = self.steps - job.submitted_step
            self.first_token_waits.append(job.wait_steps)
        finish: str | None = None
        if self.model.is_eog(token):  # counted as generated, but not part of the text or its logprobs
            finish, text = "stop", seq.text.flush()
        else:
            if job.top_logprobs is not None:
                seq.pending_logprobs.append(logprobs_at(self.model, idx, token, job.top_logprobs))
            text, stopped = seq.text.push(self.model.piece(token))
            if stopped:
                finish = "stop"
            elif seq.generated >= job.max_tokens:
                finish = "length"
                text += seq.text.flush()
        seq.next_token = token
        self._emit(seq, text, finish)
        if finish is not None:
            self._end(seq, notify=True)

    def _emit(self, seq: Sequence, text: str, finish: str | None) -> None:
        logprobs = None
        if seq.pending_logprobs and (text or finish is not None):
            logprobs, seq.pending_logprobs = seq.pending_logprobs, []
        delta = ChoiceDelta(seq.index, text, seq.generated, logprobs, finish)
        self._outbox.setdefault(seq.job, []).append(delta)

    def _end(self, seq: Sequence, *, notify: bool) -> None:
        job = seq.job
        seq.state = SeqState.DONE
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None
        self._active.remove(seq)
        self.slots.release(self.slots.slots[seq.slot])
        self.admission.release(1)
        if job.finished:
            self.active_jobs -= 1
            if notify and not job.cancelled:
                done = JobDone(len(job.prompt), job.cached_tokens, job.completion_tokens)
                self._outbox.setdefault(job, []).append(done)

    def _fail_job(self, job: Job, message: str) -> None:
        for seq in job.seqs:
            if seq.state is not SeqState.DONE and seq in self._active:
                self.model.seq_clear(seq.slot)
                self.slots.slots[seq.slot].tokens.clear()
                self._end(seq, notify=False)
        self._outbox.setdefault(job, []).append(JobFailed(message))

    def _fail_all(self, message: str) -> None:
        for job in {s.job for s in self._active}:
            self._fail_job(job, message)

    def _free_job(self, job: Job) -> None:
        """A job cancelled before it reached a slot: give back its reservation."""
        self._discard(job)
        self.admission.release(job.n)

    @staticmethod
    def _discard(job: Job) -> None:
        for seq in job.seqs:
            if seq.sampler is not None:
                seq.sampler.free()
                seq.sampler = None
            seq.state = SeqState.DONE

    def _flush(self) -> None:
        if self._outbox:
            items = list(self._outbox.items())
            self._outbox = {}
            try:
                self._deliver(items)
            except Exception:
                log.exception("handing a step's output over failed; failing its requests")
                self._fail_undelivered([job for job, _ in items])

    def _fail_undelivered(self, jobs: list[Job]) -> None:
        """None of a failed hand-over reached the loop: each of its requests ends with an error
        event (which needs no rendering), whether or not it was still running."""
        message = "internal error delivering the model's output"
        for job in jobs:
            if job.finished:
                self._outbox.setdefault(job, []).append(JobFailed(message))
            else:
                self._fail_job(job, message)
        items = list(self._outbox.items())
        self._outbox = {}
        self._deliver(items)
