"""What ``slipstream doctor`` checks, one module per subject; each check returns a ``Check``.

Nothing here prints: ``slipstream.cli.doctor`` gathers the checks and renders them.

- ``report``        one check's outcome and the whole report.
- ``cpu``           instruction sets and AMX.
- ``engine``        llama.cpp's build facts, read by ``engine_probe`` in a child process.
- ``engine_probe``  run as a module: prints llama.cpp's build facts as JSON.
- ``models``        each configured model's GGUF file or upstream.
- ``smoke``         one real completion through a real runner.
- ``storage``       the data directory and the database.
"""
