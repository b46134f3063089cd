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

from slipstream.engine.core.llama_backend import LlamaModel
from slipstream.engine.errors import invalid

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


class SeqSampler:
    """One sequence's sampler: a C chain, plus an optional grammar kept outside the chain.

    A grammar is slow to apply to the whole vocabulary, so (as llama.cpp's own server does)
    the chain first draws a token unconstrained; only when the grammar rejects that token is
    the grammar applied to every candidate and the draw repeated.
    """

    def __init__(self, model: LlamaModel, params: SamplingParams, *, choice: int, penalty_window: int) -> None:
        self.chain: Any = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        self.grammar: Any = None
        try:
            _fill_chain(self.chain, model, params, choice, penalty_window)
            if params.grammar is not None:
                self.grammar = _grammar_sampler(model, params.grammar, params.grammar_trigger)
        except BaseException:
            self.free()
            raise

    def sample(self, model: LlamaModel, idx: int) -> int:
        if self.grammar is None:
            return int(lc.llama_sampler_sample(self.chain, model.ctx, idx))
        logits = model.logits(idx)
        cands = _candidates(logits)
        lc.llama_sampler_apply(self.chain, ctypes.byref(cands.array))
        token = int(cands.array.data[cands.array.selected].id)
        one = _Candidates(np.array([(token, logits[token], 0.0)], dtype=_TOKEN_DATA))
        lc.llama_sampler_apply(self.grammar, ctypes.byref(one.array))
        if math.isinf(one.array.data[0].logit):
            cands = _candidates(logits)
            lc.llama_sampler_apply(self.grammar, ctypes.byref(cands.array))
            lc.llama_sampler_apply(self.chain, ctypes.byref(cands.array))
            token = int(cands.array.data[cands.array.selected].id)
        lc.llama_sampler_accept(self.grammar, token)
        lc.llama_sampler_accept(self.chain, token)
        return token

    def free(self) -> None:
        for smpl in (self.chain, self.grammar):
            if smpl:
                lc.llama_sampler_free(smpl)
        self.chain = self.grammar = None


def _fill_chain(chain: Any, model: LlamaModel, p: SamplingParams, choice: int, window: int) -> None:
    """Order follows llama.cpp's defaults: biases, penalties, truncation, temperature, draw.

    Choice ``i`` of an ``n > 1`` request draws with ``seed + i`` so the choices differ but the
    whole request stays reproducible.
    """
    add = lc.llama_sampler_chain_add
    biases = list(p.logit_bias) + [(t, _NEG_INF) for t in p.banned]
    if biases:
        arr = (lc.llama_logit_bias * len(biases))(*[lc.llama_logit_bias(t, b) for t, b in biases])
        add(chain, lc.llama_sampler_init_logit_bias(model.n_vocab, len(biases), arr))
    if p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
        penalties = lc.llama_sampler_init_penalties(
            model.n_vocab, window, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
        )
        add(chain, penalties)
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


def _grammar_sampler(model: LlamaModel, grammar: str, trigger: str | None, param: str = "response_format") -> Any:
    if trigger is None:
        smpl = lc.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
    else:
        patterns = (ctypes.c_char_p * 1)(trigger.encode())
        smpl = lc.llama_sampler_init_grammar_lazy_patterns(model.vocab, grammar.encode(), b"root", patterns, 1, None, 0)
    if not smpl:  # llama.cpp refused it (grammar_limits.py should have first): a 400, never a NULL in a chain
        raise invalid(param, "the JSON schema could not be compiled into a grammar")
    return smpl


def check_grammar(model: LlamaModel, grammar: str, param: str = "response_format") -> None:
    """Compile a grammar once on the request thread so a bad schema is a 400, not a stream error."""
    lc.llama_sampler_free(_grammar_sampler(model, grammar, None, param))


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class _Candidates:
    """A ``llama_token_data_array`` over a numpy buffer that stays alive with it."""

    def __init__(self, data: np.ndarray[Any, Any]) -> None:
        self.data = data
        self.array = lc.llama_token_data_array(
            data=data.ctypes.data_as(lc.llama_token_data_p), size=len(data), selected=-1, sorted=False
        )


def _candidates(logits: np.ndarray[Any, Any]) -> _Candidates:
    data = np.empty(len(logits), dtype=_TOKEN_DATA)
    data["id"] = np.arange(len(logits), dtype=np.int32)
    data["logit"] = logits
    data["p"] = 0.0
    return _Candidates(data)


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
