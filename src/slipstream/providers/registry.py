"""Provider names → factories, with built-ins registered exactly like plugins (after simonw/llm).

Third-party providers register under the ``slipstream.providers`` entry-point group with a
callable ``factory(entry, deps) -> Provider``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from slipstream.catalog import ModelEntry
from slipstream.errors import ModelUnavailable
from slipstream.providers.base import Provider
from slipstream.runners.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProviderDeps:
    """What factories may need from the running gateway."""

    supervisor: Supervisor


Factory = Callable[[ModelEntry, ProviderDeps], Provider]


def _local(entry: ModelEntry, deps: ProviderDeps) -> Provider:
    from slipstream.providers.local import LocalProvider

    return LocalProvider(entry, deps.supervisor)


def _openai_compatible(entry: ModelEntry, deps: ProviderDeps) -> Provider:
    from slipstream.providers.openai_compat import OpenAICompatProvider

    api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
    return OpenAICompatProvider(entry, api_key)


def _fake(entry: ModelEntry, deps: ProviderDeps) -> Provider:
    from slipstream.providers.fake import FakeProvider

    return FakeProvider(entry.upstream_model or "echo")


BUILTIN_FACTORIES: dict[str, Factory] = {
    "local": _local,
    "openai_compatible": _openai_compatible,
    "fake": _fake,
}


class ProviderRegistry:
    """Builds one provider per catalog entry, lazily, and closes them all on shutdown."""

    def __init__(self, deps: ProviderDeps, factories: dict[str, Factory] | None = None) -> None:
        self._deps = deps
        self._factories = dict(BUILTIN_FACTORIES if factories is None else factories)
        self._instances: dict[str, Provider] = {}

    def load_plugins(self) -> None:
        for ep in entry_points(group="slipstream.providers"):
            self._factories.setdefault(ep.name, ep.load())

    def for_entry(self, entry: ModelEntry) -> Provider:
        provider = self._instances.get(entry.id)
        if provider is None:
            factory = self._factories.get(entry.provider)
            if factory is None:
                raise ModelUnavailable(f"No provider named '{entry.provider}' is installed for '{entry.id}'.")
            provider = self._instances[entry.id] = factory(entry, self._deps)
        return provider

    async def aclose(self) -> None:
        for provider in self._instances.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing provider failed")
        self._instances.clear()
