"""Metrics and logs: what an operator needs to see the gateway and its runners.

- ``metrics``  Prometheus metrics in a registry owned by one gateway.
- ``context``  the current request's id, for log lines far from the HTTP layer.
"""
