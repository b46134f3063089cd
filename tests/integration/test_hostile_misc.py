"""Hostile clients, smaller findings (issue 9, findings 9-11): what leaks, what crashes, what passes.

One gateway in front of a real fake upstream on loopback, its log kept in a file: upstream
failures reach the client in generic words (details in the log under the request id), unknown
parameters never reach a paid upstream silently, /metrics can require the admin token, list
pages are bounded, the database is owner-only, an aborted upload is one log line, and the CLI
neither sends the admin token through a redirect nor loses a secret to a key name with markup.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from slipstream.testing.fake_upstream import REFUSAL_401
from tests.support.http import Reply, post_json, request
from tests.support.server import LiveServer, run_server

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))
HELLO = [{"role": "user", "content": "hi"}]
DROPPED = "x-slipstream-dropped-params"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream_port: int) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("hostile")
    up = f"http://127.0.0.1:{upstream_port}/v1"
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    config = root / "config.yaml"
    config.write_text(
        "metrics_require_admin: true\n"
        "include_builtin_models: false\n"
        "models:\n"
        f"  - {{id: up-401, provider: openai_compatible, base_url: '{up}', upstream_model: error-401}}\n"
        f"  - {{id: up-down, provider: openai_compatible, base_url: '{dead}'}}\n"
        f"  - {{id: up-params, provider: openai_compatible, base_url: '{up}', upstream_model: echo-params}}\n"
        f"  - {{id: up-params-fwd, provider: openai_compatible, base_url: '{up}', upstream_model: echo-params,"
        " forward_params: [top_k, store]}\n"
        "  - {id: fake-echo, provider: fake}\n"
    )
    log_path = root / "server.log"
    with log_path.open("w") as log, run_server(root / "data", config, stderr=log) as server:
        yield server, log_path


@pytest.fixture(scope="module")
def server(gateway: tuple[LiveServer, Path]) -> LiveServer:
    return gateway[0]


@pytest.fixture(scope="module")
def key(server: LiveServer) -> str:
    return server.create_key("hostile")[1]


def chat(server: LiveServer, key: str, model: str, **extra: Any) -> Reply:
    return post_json(server.openai_base + "/chat/completions", {"model": model, "messages": HELLO, **extra}, key)


def log_lines(log_path: Path, needle: str, timeout: float = 5.0) -> list[str]:
    """The log lines holding ``needle``, waiting (bounded) for the first to be written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in log_path.read_text().splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


# Finding 9: upstream details never reach clients.


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_401_is_a_generic_502_with_details_in_the_log(
    gateway: tuple[LiveServer, Path], key: str, stream: bool
) -> None:
    server, log_path = gateway
    reply = chat(server, key, "up-401", stream=stream)
    assert reply.status == 502, reply.body
    error = reply.body["error"]
    assert error["type"] == "server_error" and error["code"] == "upstream_error" and error["param"] is None
    text = json.dumps(reply.body)
    for leak in ("internal-gw", "9443", "Incorrect API key", "sk-op", "invalid_api_key", "127.0.0.1"):
        assert leak not in text
    rid = reply.headers["x-request-id"]
    lines = log_lines(log_path, f"request {rid}")
    assert any(REFUSAL_401 in line and "answered 401" in line for line in lines), lines


def test_unreachable_upstream_names_no_host_or_port(gateway: tuple[LiveServer, Path], key: str) -> None:
    server, log_path = gateway
    reply = chat(server, key, "up-down")
    assert reply.status == 503 and reply.body["error"]["code"] == "model_unavailable", reply.body
    assert reply.body["error"]["message"] == "The model backend is unreachable."
    assert "127.0.0.1" not in json.dumps(reply.body)
    lines = log_lines(log_path, f"request {reply.headers['x-request-id']}")
    assert any("127.0.0.1" in line and "unreachable" in line for line in lines), lines


# Finding 11: unknown parameters never pass silently to an upstream the operator pays for.


def received(reply: Reply) -> set[str]:
    """The parameter names the echo-params upstream got."""
    assert reply.status == 200, reply.body
    return set(reply.body["choices"][0]["message"]["content"].split())


def test_bookkeeping_params_are_dropped_and_named(server: LiveServer, key: str) -> None:
    reply = chat(server, key, "up-params", store=True, service_tier="priority", user="u1", temperature=0.5)
    assert received(reply) == {"model", "messages", "temperature"}
    assert reply.headers[DROPPED] == "service_tier, store, user"
    assert DROPPED not in chat(server, key, "up-params").headers


def test_unknown_params_are_refused_by_name(server: LiveServer, key: str) -> None:
    for param in ("top_k", "teleport"):
        reply = chat(server, key, "up-params", **{param: 1})
        assert reply.status == 400, reply.body
        assert reply.body["error"]["code"] == "unsupported_parameter" and reply.body["error"]["param"] == param


def test_forward_params_let_the_operator_pass_more(server: LiveServer, key: str) -> None:
    reply = chat(server, key, "up-params-fwd", top_k=5, store=False, service_tier="flex")
    assert received(reply) == {"model", "messages", "top_k", "store"}
    assert reply.headers[DROPPED] == "service_tier"


def test_fake_provider_takes_the_runner_bookkeeping_params(server: LiveServer, key: str) -> None:
    """prompt_cache_key and safety_identifier: accepted (and dropped) like the runner accepts them."""
    reply = chat(server, key, "fake-echo", prompt_cache_key="k", safety_identifier="s")
    assert reply.status == 200, reply.body
    assert reply.headers[DROPPED] == "prompt_cache_key, safety_identifier"


# Finding 11: /metrics behind the admin token, bounded pages, owner-only database, aborted uploads.


def test_metrics_can_require_the_admin_token(server: LiveServer, key: str) -> None:
    anonymous = request("GET", server.base_url + "/metrics")
    assert anonymous.status == 401 and anonymous.body["error"]["code"] == "invalid_api_key"
    assert request("GET", server.base_url + "/metrics", token=key).status == 403
    admin = request("GET", server.base_url + "/metrics", token=server.admin_token)
    assert admin.status == 200 and "slipstream_" in admin.body


@pytest.mark.parametrize(
    ("query", "param"),
    [("page=99999999999999999999", "page"), ("page=1000000001", "page"), ("page=0", "page"),
     ("per_page=99999999999999999999", "per_page"), ("page=1e3", "page")],
)  # fmt: skip
def test_huge_pages_are_a_400_naming_the_param(server: LiveServer, query: str, param: str) -> None:
    status, body = server.control("GET", "/v2/gen-ai/models/api_keys?" + query)
    assert status == 400, body
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


def test_database_files_are_owner_only(server: LiveServer, key: str) -> None:
    chat(server, key, "fake-echo")  # a write, so the -wal and -shm exist
    files = [p for p in server.db_path.parent.iterdir() if p.name.startswith(server.db_path.name)]
    assert server.db_path in files
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o600" for p in files}


def test_an_aborted_upload_is_one_concise_log_line(gateway: tuple[LiveServer, Path], key: str) -> None:
    server, log_path = gateway
    mark = len(log_path.read_text().splitlines())
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"model": "fake-echo", "messages": [')
        time.sleep(0.3)  # the gateway is reading the body when the client goes
    time.sleep(1.0)  # no log line to wait for when all is well: give a traceback time to appear
    new = log_path.read_text().splitlines()[mark:]
    assert len(new) <= 1, new
    assert not [line for line in new if "Traceback" in line or "ClientDisconnect" in line], new
    assert chat(server, key, "fake-echo").status == 200


# Finding 10: the CLI.


def cli(server_url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLIPSTREAM_API_URL": server_url, "SLIPSTREAM_ADMIN_TOKEN": token}
    return subprocess.run([SLIPSTREAM, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET: a 307 to ``target`` if set, else an empty key list; records headers."""

    target: str | None = None
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.target is not None:
            self.send_response(307)
            self.send_header("Location", self.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"api_key_infos": [], "links": {}, "meta": {"total": 0, "page": 1, "pages": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def _serve(target: str | None) -> tuple[ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"target": target, "seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, seen


def test_cli_never_sends_the_admin_token_through_a_redirect() -> None:
    elsewhere, elsewhere_seen = _serve(None)
    other_host = f"http://localhost:{elsewhere.server_address[1]}"  # another host name and port
    redirector, redirector_seen = _serve(other_host)
    try:
        result = cli(f"http://127.0.0.1:{redirector.server_address[1]}", "slipadm-secret-token", "keys", "list")
    finally:
        redirector.shutdown()
        elsewhere.shutdown()
    assert redirector_seen and redirector_seen[0]["authorization"] == "Bearer slipadm-secret-token"
    assert not [h for h in elsewhere_seen if "authorization" in h], elsewhere_seen
    assert result.returncode == 1
    assert "(redirect_not_followed)" in result.stderr and other_host in result.stderr


def test_markup_in_a_key_name_neither_loses_the_secret_nor_breaks_lists(server: LiveServer) -> None:
    created = cli(server.base_url, server.admin_token, "keys", "create", "[/x]")
    assert created.returncode == 0, created.stderr
    secrets = [word for word in created.stdout.split() if word.startswith("sk-slip-")]
    assert secrets, created.stdout
    assert created.stdout.index(secrets[0]) < created.stdout.index("Store it now")  # printed first, plainly
    listed = cli(server.base_url, server.admin_token, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "[/x]" in listed.stdout and secrets[0] not in listed.stdout
    _, body = server.control("GET", "/v2/gen-ai/models/api_keys?per_page=200")
    uuid = next(i["uuid"] for i in body["api_key_infos"] if i["name"] == "[/x]")
    deleted = cli(server.base_url, server.admin_token, "keys", "delete", uuid)
    assert deleted.returncode == 0 and "'[/x]'" in deleted.stdout, deleted.stderr
