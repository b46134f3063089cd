"""Two gateway replicas on one database: a key change or an admin-token rotation made through one
reaches the other within a second (issue 9, findings 7 and 8).

Each test starts replicas A and B (real ``slipstream serve`` processes sharing a server secret and a
database: PostgreSQL when the suite has one, and one SQLite file), makes B cache the credential,
changes it through A (or ``slipstream admin rotate-token``), then polls B in a bounded loop and
asserts how soon B's answer changed. The measured delays are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from slipstream.auth.keys import generate_admin_token
from tests.support.http import Reply, request
from tests.support.postgres import fresh_database_url
from tests.support.server import SLIPSTREAM, LiveServer, run_server

POSTGRES_ENV = "SLIPSTREAM_TEST_POSTGRES_URL"
CATALOG = Path(__file__).parents[1] / "fixtures" / "catalog.yaml"  # several models, none loaded here
PROPAGATION_LIMIT_S = 1.5  # the promise is 1 s; the rest is slack for a loaded 2-core machine
POLL_FOR_S = 15.0  # give up well after the old 10 s cache TTL, so a failure reports the real delay
STEP_S = 0.02
REVOKED = {
    "error": {
        "message": "Invalid model access key: unknown or revoked",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
WRONG_ADMIN = {
    "error": {
        "message": "The admin token is missing or wrong.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


def backends() -> list[str]:
    return ["postgresql", "sqlite"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


@pytest.fixture(params=backends())
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    async with fresh_database_url(os.environ[POSTGRES_ENV], "slip_replicas") as url:
        yield url


@pytest.fixture
def shared_env(database_url: str) -> dict[str, str]:
    """What both replicas share: the database, the server secret and the initial admin token."""
    return {
        "SLIPSTREAM_DATABASE_URL": database_url,
        "SLIPSTREAM_SECRET": secrets.token_hex(32),
        "SLIPSTREAM_ADMIN_TOKEN": generate_admin_token(),
    }


@dataclass
class Pair:
    a: LiveServer
    b: LiveServer


@pytest.fixture
def pair(shared_env: dict[str, str], tmp_path: Path) -> Iterator[Pair]:
    with ExitStack() as stack:
        a = stack.enter_context(run_server(tmp_path / "a", CATALOG, shared_env, expect_token=False))
        b = stack.enter_context(run_server(tmp_path / "b", CATALOG, shared_env, expect_token=False))
        yield Pair(a, b)


def models(server: LiveServer, key: str) -> Reply:
    return request("GET", server.openai_base + "/models", token=key)


def control(server: LiveServer, token: str) -> Reply:
    return request("GET", server.base_url + "/v2/gen-ai/models/api_keys", token=token)


def seconds_until(check: Callable[[], bool], what: str, since: float | None = None) -> float:
    """Seconds from ``since`` (default: now) until ``check()`` holds, polling every 20 ms for at most
    ``POLL_FOR_S``."""
    start = time.monotonic() if since is None else since
    for _ in range(int(POLL_FOR_S / STEP_S)):
        if check():
            elapsed = time.monotonic() - start
            print(f"\n{what}: {elapsed * 1000:.0f} ms")
            return elapsed
        time.sleep(STEP_S)
    raise AssertionError(f"{what}: still not seen after {POLL_FOR_S} s")


def test_regenerated_key_stops_working_on_the_other_replica(pair: Pair) -> None:
    uuid, old = pair.a.create_key("regen")
    assert models(pair.b, old).status == 200  # now in B's key cache
    status, body = pair.a.control("PUT", f"/v2/gen-ai/models/api_keys/{uuid}/regenerate")
    assert status == 200, body
    new = body["api_key_info"]["secret_key"]
    elapsed = seconds_until(lambda: models(pair.b, old).status == 401, "regenerated key refused by B after")
    assert elapsed < PROPAGATION_LIMIT_S
    reply = models(pair.b, old)
    assert (reply.status, reply.body) == (401, REVOKED)
    assert models(pair.b, new).status == 200
    assert models(pair.a, old).status == 401


def test_deleted_key_stops_working_on_the_other_replica(pair: Pair) -> None:
    uuid, secret = pair.a.create_key("doomed")
    assert models(pair.b, secret).status == 200
    status, body = pair.a.control("DELETE", f"/v2/gen-ai/models/api_keys/{uuid}")
    assert status == 200, body
    elapsed = seconds_until(lambda: models(pair.b, secret).status == 401, "deleted key refused by B after")
    assert elapsed < PROPAGATION_LIMIT_S
    reply = models(pair.b, secret)
    assert (reply.status, reply.body) == (401, REVOKED)


def test_rescoped_and_renamed_key_changes_on_the_other_replica(pair: Pair) -> None:
    uuid, secret = pair.a.create_key("wide")
    reply = models(pair.b, secret)
    assert reply.status == 200 and len(reply.body["data"]) > 1
    scoped = reply.body["data"][0]["id"]
    change = {"name": "narrow", "models": [scoped]}
    status, body = pair.a.control("PUT", f"/v2/gen-ai/models/api_keys/{uuid}", change)
    assert status == 200, body

    def narrowed() -> bool:
        reply = models(pair.b, secret)
        return reply.status == 200 and [m["id"] for m in reply.body["data"]] == [scoped]

    assert seconds_until(narrowed, "new scope applied by B after") < PROPAGATION_LIMIT_S


def rotate_token(server: LiveServer, env: dict[str, str]) -> str:
    """``slipstream admin rotate-token`` against the replica's data directory and shared database."""
    done = subprocess.run(
        [SLIPSTREAM, "admin", "rotate-token", "--data-dir", str(server.data_dir)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_rotated_admin_token_takes_effect_on_both_replicas(pair: Pair, shared_env: dict[str, str]) -> None:
    old = shared_env["SLIPSTREAM_ADMIN_TOKEN"]
    assert control(pair.a, old).status == 200
    assert control(pair.b, old).status == 200
    new = rotate_token(pair.a, shared_env)
    rotated_at = time.monotonic()
    assert new != old
    for name, server in (("A", pair.a), ("B", pair.b)):

        def refused(server: LiveServer = server) -> bool:
            return control(server, old).status == 401

        elapsed = seconds_until(refused, f"old admin token refused by {name} after", rotated_at)
        assert elapsed < PROPAGATION_LIMIT_S
        reply = control(server, old)
        assert (reply.status, reply.body) == (401, WRONG_ADMIN)
        assert control(server, new).status == 200


def test_restart_with_a_stale_env_token_keeps_the_rotated_one(
    pair: Pair, shared_env: dict[str, str], tmp_path: Path
) -> None:
    stale = shared_env["SLIPSTREAM_ADMIN_TOKEN"]
    new = rotate_token(pair.a, shared_env)
    pair.b.stop()
    log_path = tmp_path / "b-restarted.log"
    with (
        log_path.open("w") as log,
        run_server(pair.b.data_dir, CATALOG, shared_env, expect_token=False, stderr=log) as restarted,
    ):
        reply = control(restarted, stale)
        assert (reply.status, reply.body) == (401, WRONG_ADMIN)
        assert control(restarted, new).status == 200
        assert control(pair.a, new).status == 200
        assert control(pair.a, stale).status == 401
    logged = log_path.read_text()
    assert "$SLIPSTREAM_ADMIN_TOKEN differs from the admin token stored in the database" in logged
    assert "the stored token stays in force" in logged
    assert stale not in logged and new not in logged


def test_overwrite_flag_replaces_the_stored_token_everywhere(
    pair: Pair, shared_env: dict[str, str], tmp_path: Path
) -> None:
    rotated = rotate_token(pair.a, shared_env)
    chosen = shared_env["SLIPSTREAM_ADMIN_TOKEN"]
    pair.b.stop()
    env = {**shared_env, "SLIPSTREAM_ADMIN_TOKEN_OVERWRITE": "1"}
    with run_server(pair.b.data_dir, CATALOG, env, expect_token=False) as restarted:
        assert control(restarted, chosen).status == 200
        assert control(restarted, rotated).status == 401
        elapsed = seconds_until(lambda: control(pair.a, rotated).status == 401, "overwritten token refused by A")
        assert elapsed < PROPAGATION_LIMIT_S
        assert control(pair.a, chosen).status == 200
