"""The provider interface: small on purpose, like httpx's transport seam.

A provider speaks OpenAI chat-completion dicts in both directions. ``complete`` returns a
``chat.completion`` object; ``stream`` yields ``chat.completion.chunk`` objects (or a
``HEARTBEAT`` while it waits, for example on a cold start). Both raise
``slipstream.errors.SlipstreamError`` subclasses, and nothing else, for failures a client
should see. Usage must be exact: a stream always ends with a chunk that carries ``usage``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from slipstream.catalog import ModelEntry
from slipstream.errors import InvalidRequest
from slipstream.protocol.chat import ChatCompletionRequest
from slipstream.protocol.chunks import ChunkIdentity


class _Heartbeat:
    __slots__ = ()

    def __repr__(self) -> str:
        return "HEARTBEAT"


HEARTBEAT: Final = _Heartbeat()
"""Yielded by ``stream`` while nothing is ready yet; the gateway turns it into an SSE comment."""

StreamEvent = dict[str, Any] | _Heartbeat


@dataclass(slots=True)
class ChatCall:
    """One call to a model: the validated request, its id and where it is going."""

    request_id: str
    entry: ModelEntry
    request: ChatCompletionRequest
    payload: dict[str, Any]  # the client's body, less the parameters in ``dropped``
    dropped: tuple[str, ...] = ()  # bookkeeping parameters not passed on (``x-slipstream-dropped-params``)


class LentStream(Protocol):
    """A stream whose body a local runner writes to the client's own socket (``protocol/handoff.py``)."""

    def lend(self, fd: int, write_timeout_s: float) -> None: ...

    async def next_report(self) -> dict[str, Any] | None: ...

    def client_left(self) -> None: ...

    def close(self) -> None: ...


class Provider(ABC):
    """Runs chat completions for the catalog entries that name it."""

    #: parameters beyond the OpenAI core that this provider honours
    extra_params: frozenset[str] = frozenset()
    #: bookkeeping parameters (``protocol.contract.BOOKKEEPING_PARAMS``) passed on; the rest are dropped
    forwarded_bookkeeping: frozenset[str] = frozenset()

    def check(self, request: ChatCompletionRequest) -> tuple[str, ...]:
        """Reject, by name, any parameter this provider cannot honour; return the bookkeeping
        parameters to drop before the call (never forwarded silently to an upstream someone pays)."""
        unknown = [p for p in request.extra_params() if p not in self.extra_params]
        if unknown:
            raise InvalidRequest(
                f"Unsupported parameter: '{unknown[0]}' is not supported with this model.",
                param=unknown[0],
                code="unsupported_parameter",
            )
        return tuple(p for p in request.bookkeeping_params() if p not in self.forwarded_bookkeeping)

    @abstractmethod
    async def complete(self, call: ChatCall) -> dict[str, Any]: ...

    @abstractmethod
    def stream(self, call: ChatCall) -> AsyncIterator[StreamEvent]: ...

    async def lend_stream(self, call: ChatCall, identity: ChunkIdentity) -> LentStream | None:
        """Start a stream that the model's own process writes to the client; None: relay it instead."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections or processes."""
