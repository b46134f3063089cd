"""Who a data-plane request runs as, once its model access key has been checked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """A key's identity and scope; ``models is None`` means every model in the catalog."""

    key_uuid: str
    name: str
    models: frozenset[str] | None

    def may_use(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models
