"""A real ``slipstream serve`` subprocess on a free port, driven over HTTP like a user would."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from slipstream.cli.serve import ADMIN_TOKEN_LINE, URL_LINE
from tests.support.http import request

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))


@dataclass
class LiveServer:
    process: subprocess.Popen[str]
    base_url: str
    admin_token: str
    data_dir: Path
    output: list[str] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "slipstream.db"

    @property
    def openai_base(self) -> str:
        return self.base_url + "/v1"

    def control(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        reply = request(method, self.base_url + path, data, token or self.admin_token)
        return reply.status, reply.body

    def create_key(self, name: str = "test", models: list[str] | None = None) -> tuple[str, str]:
        status, body = self.control("POST", "/v2/gen-ai/models/api_keys", {"name": name, "models": models})
        assert status == 200, body
        info = body["api_key_info"]
        return info["uuid"], info["secret_key"]

    def usage_rows(self, **where: Any) -> list[dict[str, Any]]:
        con = sqlite3.connect(self.db_path)
        con.row_factory = sqlite3.Row
        try:
            clause = " AND ".join(f"{k} = ?" for k in where) or "1=1"
            rows = con.execute(f"SELECT * FROM usage WHERE {clause}", tuple(where.values())).fetchall()
            return [dict(r) for r in rows]
        finally:
            con.close()

    def wait_usage(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.usage_rows(request_id=request_id)
            if rows:
                assert len(rows) == 1
                return rows[0]
            time.sleep(0.05)
        raise AssertionError(f"no usage row for {request_id} within {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _pump(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


@contextmanager
def run_server(
    data_dir: Path,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    *,
    expect_token: bool = True,
    stderr: IO[str] | None = None,
) -> Iterator[LiveServer]:
    """Start ``slipstream serve``; ``expect_token=False`` for a data directory that already has one;
    ``stderr`` (a file) to keep the server's log instead of passing it through."""
    args = [SLIPSTREAM, "serve", "--port", "0", "--data-dir", str(data_dir)]
    if config is not None:
        args += ["--config", str(config)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, **(env or {})})
    server = LiveServer(proc, "", (env or {}).get("SLIPSTREAM_ADMIN_TOKEN", ""), data_dir)
    try:  # from here on, whatever fails, the process is stopped
        _await_announcement(server, expect_token)
        threading.Thread(target=_pump, args=(proc.stdout, server.output), daemon=True).start()
        yield server
    finally:
        server.stop()


def _await_announcement(server: LiveServer, expect_token: bool) -> None:
    """Read stdout until the URL (and, on a first run, the admin token) has been printed."""
    stdout = server.process.stdout
    assert stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line:
            break
        server.output.append(line)
        if m := URL_LINE.search(line):
            server.base_url = m.group(1)
        if m := ADMIN_TOKEN_LINE.match(line):
            server.admin_token = m.group(1)
        if server.base_url and (server.admin_token or not expect_token):
            return
    raise RuntimeError("server did not start:\n" + "".join(server.output))
