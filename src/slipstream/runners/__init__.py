"""The gateway's side of local models: runner processes started on demand and stopped when idle.

- ``supervisor``      loads and unloads runners: keep-alive, cold starts, eviction, status.
- ``process``         spawns one ``python -m slipstream.engine.runner`` and waits for its READY line.
- ``backoff``         keeps a model whose runner died while loading from being respawned per request.
- ``exit_cause``      why a runner ended, in words a user can act on.
- ``stderr_tail``     forwards a runner's stderr and keeps its last words.
- ``handoff_client``  lends a client's socket to a runner and reads its usage reports.
"""
