"""Model access keys, the admin token and the principal a key authenticates as.

- ``keys``       key and token format: prefix, checksum, HMAC digests.
- ``secret``     the server secret those digests are keyed with.
- ``service``    model access keys: create, list, scope, regenerate, delete, authenticate.
- ``admin``      the admin token of the control API.
- ``principal``  who a data-plane request runs as.
- ``watcher``    carries key and token changes made by other replicas to this one.
"""
