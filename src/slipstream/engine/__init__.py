"""The local engine: runner processes (one model each) and the supervisor that starts and stops them.

``supervisor`` / ``process`` start, watch and stop runners; ``backoff`` keeps a model whose runner
died while loading from being respawned per request; ``exit_cause`` names why a runner died;
``stderr_tail`` forwards a runner's stderr and keeps its last words. A runner is
``python -m slipstream.engine.runner`` (see ``runner.py`` for its contract). Runner modules,
one job each:

- ``runner``      CLI, startup, READY line, signals.
- ``self_check``  before READY: one batched prefill and a few decode steps, then forgotten.
- ``http_app``    aiohttp routes; JSON and SSE encoding of engine events.
- ``params``      request validation into a ``ChatRequest`` (OpenAI errors name the param).
- ``prompt``      messages (+ tools) → prompt text via the GGUF's jinja2 chat template.
- ``grammar``     response_format / tool schemas → GBNF.
- ``schema_support`` refuses JSON-schema keywords the grammar cannot enforce.
- ``tool_calls``  tool-call detection and argument streaming from generated text.
- ``responses``   OpenAI response and chunk shapes.
- ``batching``    the engine thread: continuous batching, chunked prefill, prompt cache.
- ``slots``       KV slots, prefix matching and the bounded admission queue.
- ``jobs``        a request and its sequences as the engine sees them, and the events it emits.
- ``sampling``    llama.cpp sampler chains and logprobs.
- ``textstream``  incremental UTF-8 decoding with stop-string hold-back.
- ``service``     a validated request → an engine job (prompt, limits, grammar, samplers).
- ``llama_backend`` the llama.cpp model/context handles (ctypes), tokenizer, reusable batch.
- ``threadpool``  a persistent ggml CPU threadpool attached to the context.
- ``errors``      OpenAI error envelope for the runner.
"""
