"""Per-sequence llama.cpp sampler chains, and OpenAI logprobs from the raw logits.

The chain does the per-token work in C (``llama_sampler_sample`` on the batch's logits row),
so the decode loop never touches the vocabulary in Python unless logprobs are requested.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc
import numpy as np

from slipstream.engine.errors import invalid
from slipstream.engine.llama_backend import LlamaModel

_NEG_INF = float("-inf")


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    seed: int = 0
    grammar: str | None = None
    # a lazy grammar only starts constraining once this regex matches the output so far
    grammar_trigger: str | None = None
    banned: tuple[int, ...] = ()  # token ids that may never be drawn (ignore_eos bans end-of-generation)


def build_chain(model: LlamaModel, params: SamplingParams, *, choice: int, penalty_window: int) -> Any:
    """A new sampler chain for one sequence; the caller frees it with ``free_chain``.

    Order follows llama.cpp's defaults: biases, penalties, grammar, truncation, temperature, draw.
    Choice ``i`` of an ``n > 1`` request draws with ``seed + i`` so the choices differ but
    the whole request stays reproducible.
    """
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    try:
        _fill_chain(chain, model, params, choice, penalty_window)
    except BaseException:
        lc.llama_sampler_free(chain)
        raise
    return chain


def _fill_chain(chain: Any, model: LlamaModel, p: SamplingParams, choice: int, window: int) -> None:
    add = lc.llama_sampler_chain_add
    biases = list(p.logit_bias) + [(t, _NEG_INF) for t in p.banned]
    if biases:
        arr = (lc.llama_logit_bias * len(biases))(*[lc.llama_logit_bias(t, b) for t, b in biases])
        add(chain, lc.llama_sampler_init_logit_bias(model.n_vocab, len(biases), arr))
    if p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
        add(
            chain,
            lc.llama_sampler_init_penalties(window, p.repeat_penalty, p.frequency_penalty, p.presence_penalty),
        )
    if p.grammar is not None:
        add(chain, _grammar_sampler(model, p.grammar, p.grammar_trigger))
    if p.temperature <= 0.0:
        add(chain, lc.llama_sampler_init_greedy())
        return
    if p.top_k > 0:
        add(chain, lc.llama_sampler_init_top_k(p.top_k))
    if p.top_p < 1.0:
        add(chain, lc.llama_sampler_init_top_p(p.top_p, 1))
    if p.min_p > 0.0:
        add(chain, lc.llama_sampler_init_min_p(p.min_p, 1))
    add(chain, lc.llama_sampler_init_temp(p.temperature))
    add(chain, lc.llama_sampler_init_dist((p.seed + choice) & 0xFFFFFFFF))


def _grammar_sampler(model: LlamaModel, grammar: str, trigger: str | None) -> Any:
    if trigger is None:
        smpl = lc.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
    else:
        patterns = (ctypes.c_char_p * 1)(trigger.encode())
        smpl = lc.llama_sampler_init_grammar_lazy_patterns(model.vocab, grammar.encode(), b"root", patterns, 1, None, 0)
    if not smpl:
        raise invalid("response_format", "the JSON schema could not be compiled into a grammar")
    return smpl


def check_grammar(model: LlamaModel, grammar: str) -> None:
    """Compile a grammar once on the request thread so a bad schema is a 400, not a stream error."""
    smpl = _grammar_sampler(model, grammar, None)
    lc.llama_sampler_free(smpl)


def free_chain(chain: Any) -> None:
    if chain:
        lc.llama_sampler_free(chain)


def sample(chain: Any, model: LlamaModel, idx: int) -> int:
    return int(lc.llama_sampler_sample(chain, model.ctx, idx))


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]


def logprobs_at(model: LlamaModel, idx: int, token: int, top_n: int) -> TokenLogprob:
    """Log-softmax of the raw logits row ``idx`` (before any sampler changes), OpenAI-style."""
    logits = model.logits(idx).astype(np.float64)
    peak = float(logits.max())
    lse = peak + math.log(float(np.exp(logits - peak).sum()))
    chosen = float(logits[token]) - lse
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        cand = np.argpartition(-logits, top_n - 1)[:top_n]
        cand = cand[np.argsort(-logits[cand], kind="stable")]
        top = tuple((int(t), float(logits[t]) - lse) for t in cand)
    return TokenLogprob(token, chosen, top)
