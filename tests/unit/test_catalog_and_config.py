"""Catalog entries and settings: durations, prices, validation messages, precedence."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from slipstream.catalog import Catalog, ModelEntry, builtin_gguf_path, parse_duration
from slipstream.config import ConfigError, load_settings
from slipstream.errors import ModelNotFound, RateLimited, UpstreamError, from_envelope


@pytest.mark.parametrize(
    ("value", "seconds"), [("5m", 300.0), ("30s", 30.0), ("1h", 3600.0), (0, 0.0), (-1, -1.0), ("250ms", 0.25)]
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_bad_duration_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon")


def test_unknown_model_is_never_substituted() -> None:
    catalog = Catalog([ModelEntry(id="a", provider="fake")])
    with pytest.raises(ModelNotFound) as info:
        catalog.resolve("b")
    assert info.value.envelope()["error"] == {
        "message": "The model 'b' does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_builtin_gguf_ships_in_the_wheel() -> None:
    assert builtin_gguf_path().stat().st_size > 50_000_000


def test_config_file_models_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "port: 9000\nmodels:\n  - id: m\n    provider: fake\n    keep_alive: 2m\n    prices: {input: '0.1'}\n"
    )
    monkeypatch.setenv("SLIPSTREAM_PORT", "9100")
    settings = load_settings(config, port=None)
    assert settings.port == 9100
    assert settings.models[0].keep_alive == 120.0
    assert settings.models[0].prices.input == Decimal("0.1")
    assert settings.models[0].prices.effective_cached_input == Decimal("0.1")
    assert load_settings(config, port=9200).port == 9200


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[models]]\nid = "x"\nprovider = "local"\n')
    with pytest.raises(ConfigError, match="needs a 'gguf' path"):
        load_settings(config)
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(config)


def test_upstream_errors_keep_code_and_become_ours() -> None:
    limited = from_envelope(429, {"error": {"message": "slow", "code": "rate_limit_exceeded"}}, retry_after=3)
    assert isinstance(limited, RateLimited) and limited.headers() == {"Retry-After": "3"}
    broken = from_envelope(500, "not json")
    assert isinstance(broken, UpstreamError) and broken.status == 502 and broken.code == "upstream_error"
