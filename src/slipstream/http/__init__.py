"""The HTTP surface: it answers what ``serving`` decides.

- ``app``               the app factory (no app at import time), error handlers.
- ``openai_routes``     the data plane: ``/v1/models``, ``/v1/chat/completions``.
- ``control_routes``    the control plane, ``/v2/gen-ai``, in DigitalOcean's shapes.
- ``runner_routes``     admin view of loaded runners.
- ``auth``              bearer tokens for both planes.
- ``bodies``            request bodies within the size limit, decoded as JSON.
- ``responses``         orjson JSON responses.
- ``lent_stream``       the response of a stream whose body a runner writes to the client's socket.
- ``lending``           access to a request's client socket, so that it can be lent.
- ``connection_limits`` what a connection may cost before its key is checked.
- ``middleware``        the request id on every response.
"""
