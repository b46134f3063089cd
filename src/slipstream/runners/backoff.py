"""Per-model back-off after failed runner starts, so a crashing engine is not respawned per request.

A runner that dies while loading (a broken build, a bad GGUF) would otherwise be started again
by every request, each paying a cold start and a crash. After a failure the model waits 2 s,
then 4, 8, ... up to 60 s; a successful start forgets the failures. While it waits, requests
get the last cause at once, with a Retry-After of the time left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slipstream.errors import ModelUnavailable

BASE_S = 2.0
MAX_S = 60.0


@dataclass(slots=True)
class StartFailure:
    cause: str
    failures: int  # consecutive failed starts
    retry_at: float  # monotonic clock: no new attempt before this
    failed_at: float  # wall clock, for display


def retry_after(seconds: float) -> int:
    """A Retry-After value: whole seconds, never 0 while a wait remains."""
    return max(1, math.ceil(seconds))


class StartBackoff:
    def __init__(
        self,
        base_s: float = BASE_S,
        max_s: float = MAX_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._base_s = base_s
        self._max_s = max_s
        self._clock = clock
        self._wall = wall
        self._failures: dict[str, StartFailure] = {}

    def delay_for(self, failures: int) -> float:
        return float(min(self._max_s, self._base_s * 2 ** (failures - 1)))

    def failed(self, model_id: str, cause: str) -> StartFailure:
        previous = self._failures.get(model_id)
        n = previous.failures + 1 if previous else 1
        failure = StartFailure(cause, n, self._clock() + self.delay_for(n), self._wall())
        self._failures[model_id] = failure
        return failure

    def succeeded(self, model_id: str) -> None:
        self._failures.pop(model_id, None)

    def remaining(self, failure: StartFailure) -> float:
        return max(0.0, failure.retry_at - self._clock())

    def check(self, model_id: str) -> None:
        """Raise the 503 a request gets while ``model_id`` is backing off; return when it may start."""
        failure = self._failures.get(model_id)
        if failure is None:
            return
        left = self.remaining(failure)
        if left > 0:
            raise ModelUnavailable(
                f"{failure.cause} Not retrying for {retry_after(left)}s "
                f"({failure.failures} failed start{'s' if failure.failures != 1 else ''} in a row).",
                retry_after=retry_after(left),
            )

    def rows(self) -> list[dict[str, Any]]:
        """What ``slipstream models ps`` shows for models whose last start failed."""
        rows = []
        for model_id, failure in self._failures.items():
            left = self.remaining(failure)
            rows.append(
                {
                    "model": model_id,
                    "state": "backoff" if left > 0 else "failed",
                    "cause": failure.cause,
                    "failures": failure.failures,
                    "retry_in_s": round(left, 1),
                    "failed_at": failure.failed_at,
                }
            )
        return rows
