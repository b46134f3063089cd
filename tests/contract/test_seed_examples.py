"""The seed document's three client examples, run unchanged against a live gateway.

The examples are kept in ``tests/fixtures/seed_examples.md``, copied from the seed document.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "fixtures" / "seed_examples.md"


def seed_block(language: str, index: int = 0) -> str:
    assert SEED.is_file(), f"the seed's examples are missing: {SEED}"
    blocks = re.findall(rf"```{language}\n(.*?)```", SEED.read_text(), flags=re.S)
    assert len(blocks) > index, f"{SEED} lacks {language} example {index}"
    return str(blocks[index])


@pytest.fixture()
def seed_env(live_server: LiveServer, model_key: str) -> dict[str, str]:
    return {**os.environ, "INFERENCE_ENDPOINT": live_server.base_url, "MODEL_ACCESS_KEY": model_key}


def test_python_example(seed_env: dict[str, str]) -> None:
    code = seed_block("python")
    done = subprocess.run([sys.executable, "-c", code], env=seed_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_node_example(seed_env: dict[str, str], tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "openai").is_dir():
        pytest.fail("node and the openai npm package are required: run `make test`")
    # The seed uses top-level await in CommonJS style; wrap it exactly once in an async IIFE.
    code = seed_block("javascript")
    script = tmp_path / "seed.cjs"
    head, _, body = code.partition("\n\n")
    script.write_text(
        f"{head}\n(async () => {{\n{body}\n}})().catch((e) => {{ console.error(e); process.exit(1); }});\n"
    )
    env = {**seed_env, "NODE_PATH": str(ROOT / "node_modules")}
    done = subprocess.run([node, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def _curl(block: str, env: dict[str, str]) -> dict[str, object]:
    command = block.rstrip().replace("https://inference.do-ai.run", "${INFERENCE_ENDPOINT}")
    done = subprocess.run(["bash", "-c", f"set -e; {command} --silent --show-error --fail-with-body"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_curl_examples(seed_env: dict[str, str]) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is required")
    chat = _curl(seed_block("bash", 0), seed_env)
    assert chat["object"] == "chat.completion"
    assert chat["usage"]["completion_tokens"] >= 1  # type: ignore[index]
    models = _curl(seed_block("bash", 1), seed_env)
    assert "llama3.3-70b-instruct" in [m["id"] for m in models["data"]]  # type: ignore[index]
