"""A stream lent to a local runner: its usage reports go to the meter, and its end is decided here.

The runner writes the body to the client's own socket and reports usage over the hand-off
connection (``protocol/handoff.py``). The HTTP side (``http/lent_stream.py``) sends the head,
lends the socket and writes the bytes this module decides on: ``[DONE]`` only after the usage
row is committed, an error event if the runner failed, nothing (a reset) once the client is gone.
The client sees the same bytes the relay would have sent (``protocol/chunks.py``'s rules,
applied by the runner).
"""

from __future__ import annotations

import logging
from typing import Any

from slipstream.errors import SlipstreamError, UpstreamError
from slipstream.protocol.sse import DONE, encode_event
from slipstream.providers.base import LentStream
from slipstream.serving.metering import UsageMeter

log = logging.getLogger(__name__)


class LentStreamCall:
    """One lent stream's metering and outcome; the HTTP response that carries it only writes."""

    __slots__ = ("_meter", "lent", "mid_chunk")

    def __init__(self, lent: LentStream, meter: UsageMeter) -> None:
        self.lent = lent
        self._meter = meter
        self.mid_chunk = False  # the runner left a chunk half-written (a slow client's full socket)

    def client_left(self) -> None:
        self._meter.finish("cancelled", 499, "client_disconnected")

    async def read_reports(self) -> dict[str, Any] | None:
        """Usage as the runner reports it; returns its ``done`` report, or None if it died."""
        while True:
            try:
                report = await self.lent.next_report()
            except ValueError:  # not a JSON line: treated like a runner that died
                log.exception("unreadable report from a runner")
                return None
            if report is None:
                return None
            self._meter.observe(report.get("usage"))
            self.mid_chunk = bool(report.get("blocked", self.mid_chunk))
            if "done" in report:
                return report

    async def last_bytes(self, done: dict[str, Any] | None) -> bytes | None:
        """What ends the response once the runner is done; None: reset the connection instead."""
        meter = self._meter
        if done is None:
            raise UpstreamError("The model backend failed mid-stream.")
        meter.timings_from(done.get("first_at"), done.get("itl") or [])
        outcome = done.get("done")
        if outcome == "ok":
            await meter.settle("ok", 200)  # [DONE] only once the row is committed
            return DONE
        if outcome == "cancelled":  # the runner could no longer write: the client left or stopped reading
            self.client_left()
            return None  # the response cannot be ended, and a stalled client is not waited for
        log.warning("lent stream failed in the runner: %s", done.get("message"))
        failure = SlipstreamError("The server failed while streaming.")
        await meter.settle_failure(failure)
        return encode_event(failure.envelope())

    async def settle_failure(self, exc: BaseException) -> bytes | None:
        """Its committed row, then the error event to end with; None: the runner's chunk is torn,
        an event would land inside it, so the connection must end without one."""
        await self._meter.settle_failure(exc)
        if not isinstance(exc, SlipstreamError) or self.mid_chunk:
            return None
        return encode_event(exc.envelope())
