"""The ``slipstream`` command line: a doctl-like client of the control API, plus ``serve``."""
