"""What ``slipstream doctor`` checks, one module per subject; each check returns a ``Check``.

Nothing here prints: ``slipstream.cli.doctor`` gathers the checks and renders them.
"""
