"""The ``slipstream`` CLI as a user runs it, against a live gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.server import LiveServer

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))


def run(server: LiveServer, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLIPSTREAM_API_URL": server.base_url, "SLIPSTREAM_ADMIN_TOKEN": token or server.admin_token}
    env.pop("SLIPSTREAM_DATA_DIR", None)
    return subprocess.run([SLIPSTREAM, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def created(server: LiveServer, name: str, *extra: str) -> dict[str, Any]:
    result = run(server, "keys", "create", name, *extra, "--output", "json")
    assert result.returncode == 0, result.stderr
    info: dict[str, Any] = json.loads(result.stdout)["api_key_info"]
    return info


def test_create_shows_the_secret_once(live_server: LiveServer) -> None:
    result = run(live_server, "keys", "create", "cli-app")
    assert result.returncode == 0, result.stderr
    assert "sk-slip-" in result.stdout and "will not be shown again" in result.stdout
    info = created(live_server, "cli-json", "--models", "fake-echo,fake-slow")
    assert info["secret_key"].startswith("sk-slip-") and info["models"] == ["fake-echo", "fake-slow"]


def test_list_never_shows_secrets(live_server: LiveServer) -> None:
    info = created(live_server, "cli-listed")
    table = run(live_server, "keys", "list")
    assert table.returncode == 0, table.stderr
    assert "cli-listed" in table.stdout and info["uuid"] in table.stdout
    assert f"{info['prefix']}…{info['last4']}" in table.stdout
    assert info["secret_key"] not in table.stdout
    listing = json.loads(run(live_server, "keys", "list", "-o", "json").stdout)
    assert any(i["uuid"] == info["uuid"] for i in listing["api_key_infos"])
    assert info["secret_key"] not in json.dumps(listing)


def test_rename_regenerate_delete(live_server: LiveServer) -> None:
    info = created(live_server, "cli-life")
    uuid = info["uuid"]
    renamed = run(live_server, "keys", "rename", uuid, "cli-renamed", "-o", "json")
    assert json.loads(renamed.stdout)["api_key_info"]["name"] == "cli-renamed"
    scoped = run(live_server, "keys", "set-models", uuid, "fake-echo", "-o", "json")
    assert json.loads(scoped.stdout)["api_key_info"]["models"] == ["fake-echo"]
    regen = run(live_server, "keys", "regenerate", uuid, "-o", "json")
    assert json.loads(regen.stdout)["api_key_info"]["secret_key"] != info["secret_key"]
    deleted = run(live_server, "keys", "delete", uuid)
    assert deleted.returncode == 0 and "cli-renamed" in deleted.stdout
    again = run(live_server, "keys", "delete", uuid)
    assert again.returncode == 1
    assert again.stderr.startswith("Error: ") and again.stderr.rstrip().endswith("(not_found)")


def test_errors_exit_1_with_message_and_code(live_server: LiveServer, model_key: str) -> None:
    wrong = run(live_server, "keys", "list", token=model_key)
    assert wrong.returncode == 1 and "(admin_token_required)" in wrong.stderr
    unknown = run(live_server, "keys", "create", "x", "--models", "gpt-9")
    assert unknown.returncode == 1 and "gpt-9" in unknown.stderr
    down = run(live_server, "models", "list", "--api-url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "(connection_error)" in down.stderr


def test_models_and_regions(live_server: LiveServer) -> None:
    models = run(live_server, "models", "list")
    assert models.returncode == 0 and "fake-echo" in models.stdout
    regions = json.loads(run(live_server, "regions", "list", "-o", "json").stdout)
    assert regions["regions"][0]["inference_url"] == live_server.base_url


def test_usage_from_the_data_dir_and_over_http(live_server: LiveServer) -> None:
    live_server.create_key("cli-usage")
    local = run(live_server, "usage", "--data-dir", str(live_server.data_dir), "--by", "model", "-o", "csv")
    assert local.returncode == 0, local.stderr
    assert (
        local.stdout.splitlines()[0] == "model,requests,prompt_tokens,cached_tokens,completion_tokens,total_tokens,cost"
    )
    remote = run(live_server, "usage", "--api-url", live_server.base_url, "--by", "model", "-o", "json")
    assert remote.returncode == 0, remote.stderr
    assert "usage" in json.loads(remote.stdout)
    bad = run(live_server, "usage", "--data-dir", str(live_server.data_dir), "--since", "last-week")
    assert bad.returncode == 1 and "(invalid_value)" in bad.stderr
