"""A validated request → an engine ``Job``: prompt, token ids, limits, grammar and samplers.

Runs on the HTTP thread (llama.cpp's tokenizer and sampler constructors are thread-safe), so
every client error is raised here as a 400 before anything reaches the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from slipstream.engine.core.batching import Engine
from slipstream.engine.core.jobs import Job
from slipstream.engine.core.llama_backend import LlamaModel
from slipstream.engine.core.sampling import SeqSampler, check_grammar
from slipstream.engine.prepare.grammar import request_grammar
from slipstream.engine.prepare.params import ChatRequest, context_error
from slipstream.engine.prepare.prompt import PromptRenderer


@dataclass
class RunnerState:
    model_id: str
    model: LlamaModel
    engine: Engine
    renderer: PromptRenderer
    n_ctx: int
    parallel: int
    pid: int
    lent_streams: int = 0  # streams written to a client socket the gateway lent (handoff_server.py)
    _eog: tuple[int, ...] | None = field(default=None, repr=False)

    def eog_tokens(self) -> tuple[int, ...]:
        if self._eog is None:
            self._eog = tuple(self.model.eog_tokens())
        return self._eog

    def tokenize_prompt(self, text: str) -> list[int]:
        bos_text = self.renderer.bos_token
        add_bos = self.model.add_bos and not (bos_text and text.startswith(bos_text))
        return self.model.tokenize(text, add_special=add_bos, parse_special=True)

    def prepare(self, req: ChatRequest) -> Job:
        text = self.renderer.render(req.messages, req.tools, req.tool_choice)
        prompt = self.tokenize_prompt(text)
        room = self.n_ctx - len(prompt)
        if room < (req.max_tokens or 1):
            raise context_error(len(prompt), req.max_tokens, self.n_ctx)
        grammar, trigger = request_grammar(req)
        if grammar is not None:
            check_grammar(self.model, grammar, "tools" if req.tool_choice != "none" else "response_format")
        params = req.sampling
        banned = self.eog_tokens() if req.ignore_eos else ()
        if grammar is not None or banned:
            params = replace(params, grammar=grammar, grammar_trigger=trigger, banned=banned)
        samplers: list[SeqSampler] = []
        try:
            for i in range(req.n):
                samplers.append(SeqSampler(self.model, params, choice=i, penalty_window=self.n_ctx))
        except BaseException:
            for smpl in samplers:
                smpl.free()
            raise
        return Job(
            prompt=prompt,
            n=req.n,
            max_tokens=req.max_tokens or room,
            top_logprobs=req.top_logprobs if req.logprobs else None,
            samplers=samplers,
            stops=req.stop,
        )

    def discard(self, job: Job) -> None:
        """Free the samplers of a job the engine never accepted."""
        for seq in job.seqs:
            if seq.sampler is not None:
                seq.sampler.free()
                seq.sampler = None
