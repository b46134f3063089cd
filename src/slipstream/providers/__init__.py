"""Providers: the one seam between the gateway and whatever actually runs a model.

- ``base``           the interface (``Provider``, ``ChatCall``, ``HEARTBEAT``, ``LentStream``).
- ``registry``       provider names → factories, built-ins registered like plugins.
- ``local``          local GGUF models through ``runners``' supervisor.
- ``openai_compat``  self-hosted or paid OpenAI-compatible upstreams.
- ``fake``           a fake provider whose model name selects its behaviour, for tests and benchmarks.
"""
