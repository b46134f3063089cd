"""Slipstream: self-hostable serverless inference behind one OpenAI-compatible API.

Layers, lowest first; a module imports only from its own package or a lower layer, and no
import cycle exists (``tests/unit/test_layers.py`` checks both):

1. ``errors``, ``cpu``, ``observability``: the exception tree, CPU facts, metrics and log context;
2. ``protocol``: wire formats shared by the gateway and the runner (requests, chunks, SSE, hand-off);
3. ``catalog``, then ``config``; then ``store``; then ``auth`` and ``ledger``;
4. ``upstream``: the HTTP client of OpenAI-compatible servers;
5. ``runners``: the gateway's side of local models (start, keep alive, stop, hand off);
6. ``providers`` (and ``testing``'s fake upstream); then ``serving``: what a request does;
7. ``services`` (the composition root) and ``diagnostics``; then ``http``; then ``cli``.

``engine`` is the runner process, a program of its own: it imports only layers 1 and 2, and
nothing of the gateway imports it (the supervisor starts ``python -m slipstream.engine.runner``).
"""

__version__ = "0.1.0"
