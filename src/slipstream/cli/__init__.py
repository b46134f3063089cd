"""The ``slipstream`` command line: a doctl-like client of the control API, plus ``serve``.

- ``main``     the Typer app.
- ``serve``    build the services, bind, serve.
- ``keys``, ``models``, ``usage``, ``admin``, ``doctor``: one command group each.
- ``client``   a small control-API client and the shared options.
- ``output``   tables, JSON and CSV, errors on stderr.
"""
