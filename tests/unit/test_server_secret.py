"""The server secret file: created 0600 in a 0700 directory, and weak or exposed secrets refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slipstream.auth.secret import load_or_create_server_secret
from slipstream.config import ConfigError


@pytest.fixture(autouse=True)
def _no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPSTREAM_SECRET", raising=False)


def test_first_run_creates_a_private_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    secret = load_or_create_server_secret(data_dir)
    path = data_dir / "server.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0
    assert len(secret) >= 32
    assert load_or_create_server_secret(data_dir) == secret
    assert [p.name for p in data_dir.iterdir()] == ["server.secret"]  # no temp files left behind


def test_file_text_equals_env_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = load_or_create_server_secret(tmp_path)
    monkeypatch.setenv("SLIPSTREAM_SECRET", (tmp_path / "server.secret").read_text())
    assert load_or_create_server_secret(tmp_path / "elsewhere") == secret


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_readable_file_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create_server_secret(tmp_path)
    os.chmod(tmp_path / "server.secret", mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_server_secret(tmp_path)


def test_short_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.secret"
    path.write_text("short-secret\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="too short"):
        load_or_create_server_secret(tmp_path)


def test_raw_binary_file_is_accepted_when_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "server.secret"
    path.write_bytes(b"\xff" + os.urandom(40))
    path.chmod(0o600)
    assert load_or_create_server_secret(tmp_path) == path.read_bytes()
    path.write_bytes(b"\xff" * 8)
    with pytest.raises(ConfigError, match="8 bytes"):
        load_or_create_server_secret(tmp_path)


@pytest.mark.parametrize("weak", ["x" * 10, "hunter2", "a" * 64, "abababababababababababababababab"])
def test_weak_env_secret_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weak: str) -> None:
    monkeypatch.setenv("SLIPSTREAM_SECRET", weak)
    with pytest.raises(ConfigError, match="SLIPSTREAM_SECRET"):
        load_or_create_server_secret(tmp_path)
    assert not (tmp_path / "server.secret").exists()


def test_strong_env_secret_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = "3f9a1c0be27d4c55a8e6f0b1d2c3e4f5"
    monkeypatch.setenv("SLIPSTREAM_SECRET", value)
    assert load_or_create_server_secret(tmp_path) == value.encode()
