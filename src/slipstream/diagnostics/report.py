"""One check's outcome (ok / warn / fail, a detail line, facts for scripts) and the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    ok = "ok"
    warn = "warn"  # worth a look, but nothing is broken: doctor still exits 0
    fail = "fail"  # something is broken: doctor exits 1


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "detail": self.detail, **self.facts}


@dataclass(slots=True)
class Report:
    """Sections keyed by name (``versions``, ``cpu``, ...), then one check per configured model."""

    sections: dict[str, Check] = field(default_factory=dict)
    models: list[Check] = field(default_factory=list)

    def checks(self) -> list[Check]:
        return [*self.sections.values(), *self.models]

    @property
    def status(self) -> Status:
        statuses = {c.status for c in self.checks()}
        return Status.fail if Status.fail in statuses else Status.warn if Status.warn in statuses else Status.ok

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status.value}
        body.update({name: check.as_json() for name, check in self.sections.items()})
        body["models"] = [check.as_json() for check in self.models]
        return body
