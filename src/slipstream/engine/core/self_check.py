"""The runner's start-up self-check: prove the engine computes before saying READY.

A llama.cpp build can load a model fine and still die on its first batched matmul (AMX kernels
from ``-march=native`` segfault on some CPUs). Caught at the first request, that is a dropped
connection and a bare 503; caught here, the runner dies before READY and the supervisor reports
why (``runners/exit_cause.py``) and backs off. So the runner prefills one short prompt in a single batch
and decodes three tokens through the same engine code as a request (``Engine.run_inline``: the
same admission, batch, decode and C sampler chain, on the engine thread itself), then forgets
it: no slot keeps its KV and no counter shows it. On the default model it costs a few tens of milliseconds.

Test-only fault switch, read from the environment (which the gateway passes to its runners):
``SLIPSTREAM_TEST_RUNNER_SELF_CHECK_FAULT``

- ``segv``: the runner kills itself with SIGSEGV during the self-check, as the AMX build did;
- ``segv-after-ready``: the self-check passes and the first request's decode step kills the
  runner with SIGSEGV (the failure as users saw it before this check existed).

Both switch core dumps off first. Any other non-empty value fails the self-check.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine imports llama_cpp; tests read the constants here without loading it
    from slipstream.engine.core.batching import Engine
    from slipstream.engine.core.llama_backend import LlamaModel, TokenBatch

FAULT_ENV = "SLIPSTREAM_TEST_RUNNER_SELF_CHECK_FAULT"
FAULTS = ("segv", "segv-after-ready")
# plain text, no chat template: 16-20 tokens with any common vocabulary, so prefill runs as one batch
PROBE = "The quick brown fox jumps over the lazy dog while five boxing wizards jump quickly."
MIN_PROMPT_TOKENS = 12
GENERATE = 4  # the token sampled from the prefill, then three decode steps


class SelfCheckFailed(RuntimeError):
    """The engine ran but answered wrongly (a decode error, no tokens); the runner exits non-zero."""


@dataclass(frozen=True, slots=True)
class SelfCheckResult:
    prompt_tokens: int
    generated: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "generated": self.generated, "seconds": round(self.seconds, 4)}


def fault_from_env() -> str | None:
    """The requested test fault, or None; an unknown value is an error, not silently ignored."""
    fault = os.environ.get(FAULT_ENV, "")
    if not fault:
        return None
    if fault not in FAULTS:
        raise SelfCheckFailed(f"unknown {FAULT_ENV}={fault!r}; expected one of {', '.join(FAULTS)}")
    return fault


def _segfault() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a simulated crash leaves no core file behind
    os.kill(os.getpid(), signal.SIGSEGV)


def _crash_on_decode(model: LlamaModel) -> None:
    def decode(batch: TokenBatch) -> int:
        _segfault()
        return -1

    setattr(model, "decode", decode)  # noqa: B010 - this instance only, and only in the test fault


def run(engine: Engine, n_ctx: int, fault: str | None = None) -> SelfCheckResult:
    """On the engine thread before its loop (``engine.start(first=...)``); raises ``SelfCheckFailed``."""
    from slipstream.engine.core.jobs import ChoiceDelta, Job, JobDone, JobFailed
    from slipstream.engine.core.sampling import SamplingParams, SeqSampler

    model = engine.model
    started = time.perf_counter()
    room = max(1, n_ctx - GENERATE)  # a tiny --n-ctx gets a shorter probe, not a context overflow
    prompt = model.tokenize(PROBE, add_special=model.add_bos, parse_special=False)[:room]
    if len(prompt) < min(MIN_PROMPT_TOKENS, room):
        raise SelfCheckFailed(f"the probe prompt is only {len(prompt)} tokens with this vocabulary")
    params = SamplingParams(temperature=0.0, banned=(model.eos,) if model.eos >= 0 else ())
    sampler = SeqSampler(model, params, choice=0, penalty_window=n_ctx)
    job = Job(prompt=prompt, n=1, max_tokens=GENERATE, top_logprobs=None, samplers=[sampler], stops=())
    if fault == "segv":
        _segfault()
    try:
        events = engine.run_inline(job)
    finally:
        engine.forget()
    failed = [ev.message for ev in events if isinstance(ev, JobFailed)]
    if failed:
        raise SelfCheckFailed(f"the engine failed its self-check: {failed[0]}")
    done = [ev for ev in events if isinstance(ev, JobDone)]
    generated = max((ev.completion_tokens for ev in events if isinstance(ev, ChoiceDelta)), default=0)
    if not done or generated < 1:
        raise SelfCheckFailed("the engine produced no tokens in its self-check")
    if fault == "segv-after-ready":
        _crash_on_decode(model)
    return SelfCheckResult(len(prompt), generated, time.perf_counter() - started)
