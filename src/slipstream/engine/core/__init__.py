"""The batching core of the runner: llama.cpp, the engine thread, and what it works on.

- ``llama_backend`` the llama.cpp model/context handles (ctypes), tokenizer, reusable batch.
- ``threadpool``    a persistent ggml CPU threadpool attached to the context.
- ``batching``      the engine thread: continuous batching, chunked prefill, prompt cache.
- ``slots``         KV slots, prefix matching and the bounded admission queue.
- ``jobs``          a request and its sequences as the engine sees them, and the events it emits.
- ``sampling``      llama.cpp sampler chains and logprobs.
- ``textstream``    incremental UTF-8 decoding with stop-string hold-back.
- ``self_check``    before READY: one batched prefill and a few decode steps, then forgotten.
"""
