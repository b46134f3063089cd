"""``slipstream doctor`` as a user runs it: a real engine probe, a real runner, real files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slipstream.engine.core.self_check import FAULT_ENV

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))


def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}, **(env or {})}
    done = subprocess.run(
        [SLIPSTREAM, "doctor", "--output", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_healthy_install(tmp_path: Path) -> None:
    code, report = doctor("--data-dir", str(tmp_path / "data"))
    assert code == 0, report
    assert report["status"] in ("ok", "warn")
    versions = report["versions"]
    assert versions["status"] == "ok"
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["llama_cpp_python"] and versions["llama_cpp"]
    engine = report["engine"]
    assert engine["status"] == "ok" and engine["amx"] is False
    assert "CPU" in engine["features"] and engine["system_info"].startswith("CPU : ")
    cpu = report["cpu"]
    assert cpu["status"] == "ok" and isinstance(cpu["amx"], bool) and isinstance(cpu["instruction_sets"], list)
    inference = report["inference"]
    assert inference["status"] == "ok", inference["detail"]
    assert inference["model"] == "smollm2-135m-instruct"
    assert inference["completion_tokens"] == inference["max_tokens"] == 32
    assert inference["tokens_per_s"] > 0 and inference["wall_s"] > 0
    assert report["data_dir"] == {
        "status": "ok",
        "detail": f"{tmp_path / 'data'}: not created yet; `slipstream serve` creates it",
        "path": str(tmp_path / "data"),
        "exists": False,
        "writable": True,
    }
    database = report["database"]
    assert database["status"] == "ok" and database["exists"] is False and database["revision"] is None
    assert database["head"]
    assert not (tmp_path / "data").exists()  # doctor created nothing
    [builtin] = report["models"]
    assert builtin["id"] == "smollm2-135m-instruct" and builtin["status"] == "ok"
    assert builtin["gguf"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_a_migrated_database_is_at_head(tmp_path: Path) -> None:
    db = tmp_path / "data" / "slipstream.db"
    subprocess.run([sys.executable, "-c", _MIGRATE, str(db)], check=True, capture_output=True, timeout=120)
    code, report = doctor("--data-dir", str(tmp_path / "data"), "--skip-inference")
    database = report["database"]
    assert code == 0, report
    assert database["status"] == "ok" and database["writable"] is True
    assert database["revision"] == database["head"]
    assert database["detail"] == f"{db}: writable, at revision {database['head']} (head)"
    assert report["inference"] == {"status": "warn", "detail": "skipped (--skip-inference)"}


_MIGRATE = """
import asyncio, sys
from slipstream.store.db import Database

async def main() -> None:
    db = await Database.open("sqlite:///" + sys.argv[1])
    await db.aclose()

asyncio.run(main())
"""


def test_a_missing_gguf_and_a_dead_upstream_fail(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    upstream = f"http://127.0.0.1:{closed_port()}/v1"
    config = tmp_path / "catalog.yaml"
    config.write_text(
        "models:\n"
        f"  - {{id: lost-local, provider: local, gguf: '{missing}'}}\n"
        f"  - {{id: dead-upstream, provider: openai_compatible, base_url: '{upstream}'}}\n"
        "  - {id: fake-echo, provider: fake}\n"
    )
    code, report = doctor("--config", str(config), "--data-dir", str(tmp_path / "data"), "--skip-inference")
    assert code == 1
    assert report["status"] == "fail"
    assert report["config"]["status"] == "ok" and report["config"]["models"] == 3
    models = {m["id"]: m for m in report["models"]}
    assert list(models) == ["smollm2-135m-instruct", "lost-local", "dead-upstream", "fake-echo"]
    assert models["smollm2-135m-instruct"]["status"] == "ok"
    assert models["lost-local"]["status"] == "fail"
    assert models["lost-local"]["detail"] == f"GGUF file missing: {missing}"
    assert models["dead-upstream"]["status"] == "fail"
    assert models["dead-upstream"]["detail"].startswith(f"upstream {upstream}/models unreachable: ")
    assert models["fake-echo"] == {
        "status": "ok",
        "detail": "built-in fake provider",
        "id": "fake-echo",
        "provider": "fake",
    }


def _unwritable_under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "data"
    return path, f"{path} cannot be created: {tmp_path / 'a-file'} is not a directory"


def _unwritable_by_mode(tmp_path: Path) -> tuple[Path, str]:
    if os.geteuid() == 0:
        pytest.skip("root writes into a 0500 directory anyway")
    path = tmp_path / "read-only"
    path.mkdir(mode=0o500)
    return path, f"{path} is not writable: Permission denied"


@pytest.mark.parametrize("make", [_unwritable_under_a_file, _unwritable_by_mode])
def test_an_unwritable_data_dir_fails(tmp_path: Path, make: Any) -> None:
    path, detail = make(tmp_path)
    code, report = doctor("--data-dir", str(path), "--skip-inference")
    assert code == 1
    assert report["data_dir"]["status"] == "fail"
    assert report["data_dir"]["detail"] == detail
    assert report["data_dir"]["writable"] is False


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("segv", "The local engine crashed with SIGSEGV (signal 11) while loading smollm2-135m-instruct; "),
        ("segv-after-ready", "the runner crashed with SIGSEGV (signal 11) while generating"),
    ],
)
def test_a_crashing_runner_is_named_by_its_signal(tmp_path: Path, fault: str, cause: str) -> None:
    code, report = doctor("--data-dir", str(tmp_path / "data"), env={FAULT_ENV: fault})
    assert code == 1
    inference = report["inference"]
    assert inference["status"] == "fail"
    assert inference["detail"].startswith(cause), inference["detail"]
    assert report["engine"]["status"] == "ok"  # the probe does not run the runner's self-check
