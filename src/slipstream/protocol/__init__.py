"""Wire formats, shared by the gateway and the runner process; no application state.

- ``contract``  the one request contract: which parameters exist, for gateway and runner alike.
- ``chat``      the gateway's validation of a chat-completions body (pydantic).
- ``chunks``    response and stream-chunk shapes: built by the runner, reshaped by the relay.
- ``usage``     the OpenAI ``usage`` object.
- ``sse``       server-sent-event framing, ``[DONE]`` and keep-alives.
- ``handoff``   the gateway ↔ runner socket hand-off: messages, framing, passing a descriptor.
"""
