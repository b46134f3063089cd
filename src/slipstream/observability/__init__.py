"""Metrics and logs: what an operator needs to see the gateway and its runners."""
