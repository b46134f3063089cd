"""``slipstream serve`` as an operator meets it: first run, restarts, and refusing a weak secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from openai import OpenAI

from tests.support.server import run_server

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))
FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_admin_token_is_printed_on_the_first_run_only_and_state_survives_restarts(tmp_path: Path) -> None:
    with run_server(tmp_path, FIXTURES / "catalog.yaml") as first:
        assert any("Admin token" in line for line in first.output)
        uuid, secret = first.create_key("survivor")
        OpenAI(base_url=first.openai_base, api_key=secret).chat.completions.create(
            model="fake-echo", messages=[{"role": "user", "content": "one two"}]
        )
        token = first.admin_token
    assert (tmp_path / "server.secret").stat().st_mode & 0o777 == 0o600
    with run_server(tmp_path, FIXTURES / "catalog.yaml", expect_token=False) as second:
        second.admin_token = token
        assert not any("Admin token" in line for line in second.output)
        status, body = second.control("GET", f"/v2/gen-ai/models/api_keys/{uuid}")
        assert status == 200 and body["api_key_info"]["name"] == "survivor"
        reply = OpenAI(base_url=second.openai_base, api_key=secret).models.list()
        assert reply.data
        rows = second.usage_rows(key_uuid=uuid)
        assert len(rows) == 1 and rows[0]["completion_tokens"] == 2


def refused_start(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """Run ``slipstream serve`` expecting it to refuse to start; return what it said on stderr."""
    done = subprocess.run(
        [SLIPSTREAM, "serve", "--port", "0", "--data-dir", str(tmp_path), *extra],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    return done.stderr


def test_weak_secret_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    assert "SLIPSTREAM_SECRET" in refused_start(tmp_path, env={"SLIPSTREAM_SECRET": "short"})


def test_invalid_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  - id: x\n    provider: local\n")
    assert "gguf" in refused_start(tmp_path, "--config", str(config))
