"""Delivering engine output to a client, over the runner's own HTTP or a socket the gateway lent.

- ``http_app``        aiohttp routes: health, models, status, chat completions (JSON or SSE).
- ``stream_pump``     one stream's SSE body from engine events, whatever carries it.
- ``responses``       engine output in OpenAI terms: logprobs, tool-call deltas, completion ids.
- ``tool_calls``      tool-call detection and argument streaming from generated text.
- ``direct_stream``   chunks written by the engine thread straight to the client's socket.
- ``handoff_server``  the runner's side of the socket hand-off (``protocol.handoff``).
- ``lent_socket``     writing to a lent client socket, with the write timeout.
- ``report_channel``  usage reports back to the gateway during a lent stream.
- ``unix_socket``     private Unix sockets (mode 0600) for the runner's listeners.
"""
