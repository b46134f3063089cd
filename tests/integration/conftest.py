"""Fixtures the integration modules share: a fake OpenAI-compatible upstream on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    """``slipstream.testing.fake_upstream`` as a real HTTP server; its model name picks its behaviour."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream.testing.fake_upstream", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("FAKE_UPSTREAM_READY"), line
        yield int(line.split()[1])
    finally:
        proc.kill()
        proc.wait()
