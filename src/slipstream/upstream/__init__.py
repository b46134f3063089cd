"""Talking to OpenAI-compatible servers over HTTP; below both the providers and the runners.

- ``client``  pooled aiohttp sessions and ``OpenAICompatClient`` (complete, stream).
- ``errors``  what a client may see of an external upstream's failure; the rest goes to the log.
"""
