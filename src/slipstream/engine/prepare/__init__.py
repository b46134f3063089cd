"""Preparing a request for the engine: validate it, render its prompt, constrain its output.

- ``params``         a body → ``ChatRequest`` against ``protocol.contract`` (errors name the param).
- ``schema_limits``  bounds on a JSON schema's size and depth, before any work on it.
- ``schema_support`` refuses JSON-schema keywords the grammar cannot enforce.
- ``gbnf_converter`` JSON schema → GBNF, through llama.cpp's converter.
- ``grammar_limits`` bounds on a grammar's size and shape, so a hostile one cannot crash a runner.
- ``grammar``        response_format / tool schemas → GBNF.
- ``prompt``         messages (+ tools) → prompt text via the GGUF's jinja2 chat template.
- ``service``        ``RunnerState``: a validated request → an engine job (prompt, limits, grammar, samplers).
"""
