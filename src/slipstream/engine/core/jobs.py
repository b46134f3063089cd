"""A request as the engine thread sees it, and the events the engine sends back.

A ``Job`` is one chat completion; it owns ``n`` ``Sequence``s (one per choice) that share
the prompt. Events cross from the engine thread to the HTTP loop in per-step batches.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from slipstream.engine.core.sampling import SeqSampler, TokenLogprob
from slipstream.engine.core.textstream import TextStream


@dataclass(slots=True)
class ChoiceDelta:
    """New output of one choice. ``text`` may be empty while a stop string is being held back."""

    index: int
    text: str
    completion_tokens: int  # this choice's total so far
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class JobDone:
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class JobFailed:
    message: str


Event = ChoiceDelta | JobDone | JobFailed


class SeqState(enum.Enum):
    WAITING = "waiting"  # admitted, not yet on a slot
    PREFILL = "prefill"  # feeding prompt chunks
    FOLLOW = "follow"  # n > 1 sibling waiting for the first choice's prompt KV copy
    DECODE = "decode"  # one sampled token to feed per step
    DONE = "done"


@dataclass(eq=False)
class Sequence:
    job: Job
    index: int
    sampler: SeqSampler | None  # owned; freed by the engine when the sequence ends
    text: TextStream
    state: SeqState = SeqState.WAITING
    slot: int = -1
    n_past: int = 0
    next_token: int = -1
    generated: int = 0
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(eq=False)
class Job:
    prompt: list[int]
    n: int
    max_tokens: int
    top_logprobs: int | None  # None: no logprobs
    samplers: list[SeqSampler]
    stops: tuple[str, ...]
    cancelled: bool = False
    cached_tokens: int = 0
    seqs: list[Sequence] = field(default_factory=list)
    sink: Any = None  # the HTTP side's event queue
    direct: Any = None  # a stream's DirectWriter (direct_stream.py), or None
    submitted_at: float = field(default_factory=time.monotonic)  # for queue-time accounting
    # decode steps the engine ran between the job's submission and its first token: the fairness
    # measure that machine noise does not blur (time to first token in steps, not seconds)
    submitted_step: int = 0
    wait_steps: int | None = None

    def __post_init__(self) -> None:
        self.seqs = [Sequence(self, i, smpl, TextStream(self.stops)) for i, smpl in enumerate(self.samplers)]

    @property
    def completion_tokens(self) -> int:
        return sum(s.generated for s in self.seqs)

    @property
    def finished(self) -> bool:
        return all(s.state is SeqState.DONE for s in self.seqs)
