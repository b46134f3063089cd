"""The runner process: one GGUF model, continuous batching, OpenAI-compatible output.

Started as ``python -m slipstream.engine.runner`` (see ``runner.py`` for its contract) by
``slipstream.runners``; it imports only ``errors``, ``cpu`` and ``protocol`` from the rest of
Slipstream. By stage, lowest first (each imports only the ones before it):

- ``errors``    shorthands for the errors the runner reports.
- ``core/``     the batching engine on llama.cpp: jobs, slots, sampling, the engine thread.
- ``prepare/``  a request body → a validated ``ChatRequest`` → an engine job.
- ``deliver/``  engine events → the client: aiohttp routes, SSE, direct writes, lent sockets.
- ``runner``    CLI, startup, self-check, READY line, signals.
"""
